//! The tables' large arrays: reserved once, handed to an advice callback
//! before their first write (the dataplane asks the kernel for transparent huge
//! pages there: at millions of connections most lookups would otherwise also
//! miss the TLB), then initialised.

/// Called with each large array a table reserves, before it is first
/// written: its address and length in bytes.
pub type Advise<'a> = &'a dyn Fn(*const u8, usize);

/// No advice.
pub fn no_advice(_: *const u8, _: usize) {}

/// `n` copies of `v` in memory that `advise` saw untouched.
pub(crate) fn filled<T: Clone>(n: usize, v: T, advise: Advise) -> Box<[T]> {
    let mut b: Vec<T> = Vec::with_capacity(n);
    advise(b.as_ptr() as *const u8, n * core::mem::size_of::<T>());
    b.resize(n, v);
    b.into_boxed_slice()
}

#[cfg(test)]
mod tests {
    #[test]
    fn advice_sees_the_whole_array_before_it_is_filled() {
        let seen = std::cell::Cell::new((0usize, 0usize));
        let b = super::filled(1000, 7u64, &|p, n| seen.set((p as usize, n)));
        assert_eq!(seen.get(), (b.as_ptr() as usize, 8000));
        assert!(b.iter().all(|&x| x == 7));
    }
}
