//! The registry of adstock and saturation kinds on the Rust side: each kind's
//! name, its code in the C entry points and its parameter names in kernel
//! order. Python's registry (`python/fastmmm/kinds.py`) adds domains, default
//! priors and which parameter is relative to spend; a test holds the two equal
//! through `_core.kernel_kinds()`. Adding a kind: its kernel, one row here, one
//! row there.

use super::adstock::AdstockKind;
use super::saturation::SaturationKind;

/// One kind's row: name, code, parameter names.
pub struct KindRow<K> {
    pub kind: K,
    pub name: &'static str,
    pub code: i32,
    pub params: &'static [&'static str],
}

pub const ADSTOCK_KINDS: [KindRow<AdstockKind>; 4] = [
    KindRow {
        kind: AdstockKind::Geometric,
        name: "geometric",
        code: 0,
        params: &["alpha"],
    },
    KindRow {
        kind: AdstockKind::Delayed,
        name: "delayed",
        code: 1,
        params: &["alpha", "theta"],
    },
    KindRow {
        kind: AdstockKind::WeibullPdf,
        name: "weibull_pdf",
        code: 2,
        params: &["lam", "k"],
    },
    KindRow {
        kind: AdstockKind::WeibullCdf,
        name: "weibull_cdf",
        code: 3,
        params: &["lam", "k"],
    },
];

pub const SATURATION_KINDS: [KindRow<SaturationKind>; 4] = [
    KindRow {
        kind: SaturationKind::Hill,
        name: "hill",
        code: 0,
        params: &["kappa", "slope"],
    },
    KindRow {
        kind: SaturationKind::Logistic,
        name: "logistic",
        code: 1,
        params: &["lam"],
    },
    KindRow {
        kind: SaturationKind::MichaelisMenten,
        name: "michaelis_menten",
        code: 2,
        params: &["alpha", "lam"],
    },
    KindRow {
        kind: SaturationKind::Tanh,
        name: "tanh",
        code: 3,
        params: &["b", "c"],
    },
];

fn row<K: PartialEq + Copy>(rows: &'static [KindRow<K>], kind: K) -> &'static KindRow<K> {
    rows.iter()
        .find(|r| r.kind == kind)
        .expect("every kind has a registry row")
}

/// The names of a table's kinds, for messages ("geometric, delayed, ...").
pub fn names<K>(rows: &[KindRow<K>]) -> String {
    rows.iter().map(|r| r.name).collect::<Vec<_>>().join(", ")
}

impl AdstockKind {
    pub fn from_name(name: &str) -> Option<Self> {
        ADSTOCK_KINDS
            .iter()
            .find(|r| r.name == name)
            .map(|r| r.kind)
    }
    pub fn from_code(code: i32) -> Option<Self> {
        ADSTOCK_KINDS
            .iter()
            .find(|r| r.code == code)
            .map(|r| r.kind)
    }
    pub fn name(self) -> &'static str {
        row(&ADSTOCK_KINDS, self).name
    }
    /// Parameter names in kernel order (one or two).
    pub fn param_names(self) -> &'static [&'static str] {
        row(&ADSTOCK_KINDS, self).params
    }
}

impl SaturationKind {
    pub fn from_name(name: &str) -> Option<Self> {
        SATURATION_KINDS
            .iter()
            .find(|r| r.name == name)
            .map(|r| r.kind)
    }
    pub fn from_code(code: i32) -> Option<Self> {
        SATURATION_KINDS
            .iter()
            .find(|r| r.code == code)
            .map(|r| r.kind)
    }
    pub fn name(self) -> &'static str {
        row(&SATURATION_KINDS, self).name
    }
    /// Parameter names in kernel order (one or two).
    pub fn param_names(self) -> &'static [&'static str] {
        row(&SATURATION_KINDS, self).params
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::adstock::Adstock;

    #[test]
    fn rows_are_unique_and_agree_with_the_kernels() {
        for (i, r) in ADSTOCK_KINDS.iter().enumerate() {
            assert_eq!(r.code as usize, i);
            assert_eq!(AdstockKind::from_name(r.name), Some(r.kind));
            assert_eq!(AdstockKind::from_code(r.code), Some(r.kind));
            let a = Adstock {
                kind: r.kind,
                l_max: 8,
                normalize: true,
            };
            assert_eq!(a.n_params(), r.params.len(), "{}", r.name);
        }
        for (i, r) in SATURATION_KINDS.iter().enumerate() {
            assert_eq!(r.code as usize, i);
            assert_eq!(SaturationKind::from_name(r.name), Some(r.kind));
            assert_eq!(SaturationKind::from_code(r.code), Some(r.kind));
            assert_eq!(r.kind.n_params(), r.params.len(), "{}", r.name);
        }
        assert_eq!(AdstockKind::from_name("nope"), None);
        assert_eq!(SaturationKind::from_code(9), None);
    }
}
