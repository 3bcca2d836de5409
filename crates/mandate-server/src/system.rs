//! The real clock and the operating system's CSPRNG, behind the core's injected traits.

use mandate_core::random::Entropy;
pub use mandate_core::time::SystemClock;

/// Random bytes from the operating system (via aws-lc's DRBG).
#[derive(Debug, Default)]
pub struct OsEntropy(aws_lc_rs::rand::SystemRandom);

impl Entropy for OsEntropy {
    fn fill(&self, dest: &mut [u8]) {
        use aws_lc_rs::rand::SecureRandom;
        if self.0.fill(dest).is_err() {
            // aws-lc's RNG does not fail on supported platforms; never hand out predictable
            // bytes if it somehow does.
            std::process::abort();
        }
    }
}
