//! Pure-Rust media transforms. Arrays are float64, C-contiguous, laid out as
//! `(B, T, C)`: element `[b, t, c]` sits at `b*T*C + t*C + c`. Per-channel
//! parameters are `(B, C)`. Loops run with the channel axis innermost so the
//! compiler can vectorise across channels.

pub mod adstock;
pub mod fastmath;
pub mod fused;
#[cfg(target_arch = "x86_64")]
pub mod hill512;
pub mod kinds;
pub mod response;
pub mod saturation;
pub mod simd;
pub mod validate;

/// Dimensions of a media array: batch (brands/geos), time, channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dims {
    pub b: usize,
    pub t: usize,
    pub c: usize,
}

impl Dims {
    pub fn new(b: usize, t: usize, c: usize) -> Self {
        Dims { b, t, c }
    }
    /// Elements of a media array.
    pub fn len(&self) -> usize {
        self.b * self.t * self.c
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Elements of a per-channel parameter array.
    pub fn n_params(&self) -> usize {
        self.b * self.c
    }
    /// Elements of one batch member.
    pub fn tc(&self) -> usize {
        self.t * self.c
    }
}

#[cfg(test)]
mod tests;
