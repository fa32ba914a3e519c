//! A small multiplicative hasher for the fragmentation memo: its keys are a handful of
//! integers, for which the standard SipHash is needlessly slow.

use std::hash::Hasher;

/// Folds each integer written into a 64-bit state with a rotate, xor and multiply.
#[derive(Debug, Default, Clone, Copy)]
pub struct FoldHasher(u64);

impl Hasher for FoldHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut buf = [0u8; 8];
            buf[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(buf));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.write_u64(u64::from(i));
    }

    fn write_u16(&mut self, i: u16) {
        self.write_u64(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::{BuildHasher, BuildHasherDefault};

    #[test]
    fn different_keys_hash_differently() {
        let b = BuildHasherDefault::<FoldHasher>::default();
        assert_ne!(
            b.hash_one((1u8, [0u16; 4])),
            b.hash_one((1u8, [0u16, 0, 0, 1]))
        );
    }
}
