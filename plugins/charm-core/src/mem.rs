//! `memcmp` and `bcmp` for the plugins, eight bytes at a time.
//!
//! Every string and slice comparison in Rust (`==`, `cmp`, map lookups by name) ends in
//! `memcmp`, and wasi-libc's is musl's byte-by-byte loop: in a fuzz execution of pebble-ready
//! (186 config option names matched, parameter and key lookups) it was about 3 % of the whole
//! CPU time. Defined here, these take the symbols' place at link time, so wasi-libc's own
//! callers use them too. Only in the wasm build (see `lib.rs`); [`compare`] is the portable
//! body, tested natively.

use std::cmp::Ordering;

/// Lexicographic comparison of two equally long byte ranges, as `memcmp` orders them.
#[inline]
pub fn compare(a: &[u8], b: &[u8]) -> Ordering {
    debug_assert_eq!(a.len(), b.len());
    let mut i = 0;
    while i + 8 <= a.len() {
        // Big-endian words order as their bytes do.
        let x = u64::from_be_bytes(a[i..i + 8].try_into().unwrap());
        let y = u64::from_be_bytes(b[i..i + 8].try_into().unwrap());
        if x != y {
            return x.cmp(&y);
        }
        i += 8;
    }
    while i < a.len() {
        if a[i] != b[i] {
            return a[i].cmp(&b[i]);
        }
        i += 1;
    }
    Ordering::Equal
}

#[cfg(target_arch = "wasm32")]
mod symbols {
    /// # Safety
    /// `a` and `b` are readable for `n` bytes (the C contract).
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
        if n == 0 {
            return 0;
        }
        let (a, b) = unsafe {
            (
                core::slice::from_raw_parts(a, n),
                core::slice::from_raw_parts(b, n),
            )
        };
        super::compare(a, b) as i32
    }

    /// # Safety
    /// As [`memcmp`]; only zero or non-zero is meaningful.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
        unsafe { memcmp(a, b, n) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_orders_as_the_byte_loop_does() {
        let words: Vec<&[u8]> = vec![
            b"",
            b"a",
            b"b",
            b"ab",
            b"ba",
            b"abcdefgh",
            b"abcdefgi",
            b"abcdefghi",
            b"abcdefghj",
            b"connection_authentication_timeout",
            b"connection_statement_timeout",
            b"\xff\x00\x00\x00\x00\x00\x00\x00\x01",
            b"\x00\xff\x00\x00\x00\x00\x00\x00\x01",
        ];
        for a in &words {
            for b in &words {
                let n = a.len().min(b.len());
                for len in 0..=n {
                    let (x, y) = (&a[..len], &b[..len]);
                    assert_eq!(compare(x, y), x.cmp(y), "{x:?} vs {y:?}");
                }
            }
        }
    }
}
