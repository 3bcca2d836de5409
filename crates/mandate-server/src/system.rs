//! The real clock and the operating system's CSPRNG, behind the core's injected traits.

use mandate_core::random::Entropy;
use mandate_core::time::{Clock, Timestamp};

/// Reads the system clock. The only place the server does so.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)]
    fn now(&self) -> Timestamp {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Timestamp::from_unix(i64::try_from(secs).unwrap_or(i64::MAX))
    }
}

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
