//! A growable array kept in chunks, for the index's records and blocking
//! entries: a `Vec` doubles as it grows (a million-lead index reallocated
//! from 64 to 128 MiB holds both while it copies, and up to half of the
//! new one unused after), where this adds one chunk at a time and never
//! moves what it holds. Chunks double from 64 elements up to 16,384, so a
//! small index stays small.

use std::ops::{Index, IndexMut};

const FIRST_BITS: u32 = 6;
const CHUNK_BITS: u32 = 14;
/// Elements in each chunk once they stop doubling.
const CHUNK: usize = 1 << CHUNK_BITS;

/// Elements in chunk `k`: 64, 64, 128, … 16,384, 16,384, …
fn chunk_len(k: usize) -> usize {
    match k {
        0 => 1 << FIRST_BITS,
        k => 1usize << FIRST_BITS << (k - 1).min((CHUNK_BITS - FIRST_BITS) as usize),
    }
}

/// The chunk holding element `i` and where in it: chunk `k ≥ 1` starts
/// at element `64 << (k - 1)`, and from 16,384 on every chunk is full-size.
fn locate(i: usize) -> (usize, usize) {
    if i >= CHUNK {
        (
            (i >> CHUNK_BITS) + (CHUNK_BITS - FIRST_BITS) as usize,
            i & (CHUNK - 1),
        )
    } else if i < 1 << FIRST_BITS {
        (0, i)
    } else {
        let k = (usize::BITS - (i >> FIRST_BITS).leading_zeros()) as usize;
        (k, i - (1 << FIRST_BITS << (k - 1)))
    }
}

pub(super) struct Chunked<T> {
    chunks: Vec<Vec<T>>,
    len: usize,
}

impl<T> Default for Chunked<T> {
    fn default() -> Self {
        Chunked {
            chunks: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Chunked<T> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn push(&mut self, value: T) {
        let k = self.chunks.len();
        match self.chunks.last_mut() {
            Some(chunk) if chunk.len() < chunk_len(k - 1) => chunk.push(value),
            _ => {
                let mut chunk = Vec::with_capacity(chunk_len(k));
                chunk.push(value);
                self.chunks.push(chunk);
            }
        }
        self.len += 1;
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.chunks.iter().flatten()
    }

    /// Elements room has been allocated for.
    pub fn capacity(&self) -> usize {
        self.chunks.iter().map(Vec::capacity).sum()
    }
}

impl<T> Index<usize> for Chunked<T> {
    type Output = T;

    fn index(&self, i: usize) -> &T {
        let (k, at) = locate(i);
        &self.chunks[k][at]
    }
}

impl<T> IndexMut<usize> for Chunked<T> {
    fn index_mut(&mut self, i: usize) -> &mut T {
        let (k, at) = locate(i);
        &mut self.chunks[k][at]
    }
}

impl<T> IntoIterator for Chunked<T> {
    type Item = T;
    type IntoIter = std::iter::Flatten<std::vec::IntoIter<Vec<T>>>;

    fn into_iter(self) -> Self::IntoIter {
        self.chunks.into_iter().flatten()
    }
}

impl<T> FromIterator<T> for Chunked<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        let mut c = Chunked::default();
        for v in iter {
            c.push(v);
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_double_then_stay_the_same() {
        let mut first = 0;
        for k in 0..12 {
            for at in [0, chunk_len(k) - 1] {
                assert_eq!(locate(first + at), (k, at), "chunk {k}");
            }
            first += chunk_len(k);
        }
        assert_eq!(chunk_len(0) + chunk_len(1), 128);
        assert_eq!(chunk_len(8), CHUNK / 2);
        assert_eq!(chunk_len(9), CHUNK);
        assert_eq!(chunk_len(10), CHUNK);
        assert_eq!(chunk_len(40), CHUNK);
    }

    #[test]
    fn elements_keep_their_index_across_chunks() {
        let mut c = Chunked::default();
        assert_eq!(c.len(), 0);
        for i in 0..3 * CHUNK + 5 {
            c.push(i);
        }
        assert_eq!(c.len(), 3 * CHUNK + 5);
        assert_eq!(c.capacity(), 4 * CHUNK);
        for i in 0..c.len() {
            assert_eq!(c[i], i);
        }
        for i in [0, CHUNK - 1, CHUNK, 2 * CHUNK + 7, 3 * CHUNK + 4] {
            assert_eq!(c[i], i);
        }
        assert!(c.iter().copied().eq(0..3 * CHUNK + 5));
        c[2 * CHUNK + 7] += 1;
        assert_eq!(c[2 * CHUNK + 7], 2 * CHUNK + 8);
        c[2 * CHUNK + 7] -= 1;
        let back: Chunked<usize> = c.into_iter().filter(|i| i % 2 == 0).collect();
        assert_eq!(back.len(), (3 * CHUNK + 5).div_ceil(2));
        assert_eq!(back[CHUNK], 2 * CHUNK);
    }
}
