//! Shared state: Value and Array, across units.

use uniconc::ErrorKind;
use uniconc::prelude::*;

use crate::support::scale;

pub(crate) fn value_load_store_update_under_contention<B: Backend>() {
    let v = B::value(5u64).unwrap();
    assert_eq!(v.load(), 5);
    v.store(0);
    assert_eq!(v.load(), 0);
    let units = 4u64;
    let rounds = 2_000 * scale() as u64;
    let handles: Vec<_> = (0..units)
        .map(|_| {
            let v = v.clone();
            B::spawn(move || {
                for _ in 0..rounds {
                    v.update(|x| *x += 1);
                }
            })
            .unwrap()
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(v.load(), units * rounds);
    assert_eq!(
        v.update(|x| {
            *x += 1;
            *x
        }),
        units * rounds + 1
    );
}

pub(crate) fn value_lock_guard<B: Backend>() {
    let v = B::value([1u32, 2, 3]).unwrap();
    {
        let mut g = v.lock().unwrap();
        g[1] = 20;
        g[2] += 1;
    }
    assert_eq!(v.load(), [1, 20, 4]);
    let f = B::value(1.5f64).unwrap();
    let f2 = f.clone();
    B::spawn(move || f2.store(2.5)).unwrap().join().unwrap();
    assert_eq!(f.load(), 2.5);
}

pub(crate) fn array_from_slice_get_set_bounds<B: Backend>() {
    let a = B::array::<u32>(4).unwrap();
    assert_eq!(a.len(), 4);
    assert!(!a.is_empty());
    assert_eq!(a.to_vec(), [0, 0, 0, 0], "new arrays are zeroed");
    let a = <B::Array<u32> as uniconc::Array<u32>>::from_slice(&[1, 2, 3]).unwrap();
    assert_eq!(a.get(0), Some(1));
    assert_eq!(a.get(3), None);
    a.set(2, 30).unwrap();
    let err = a.set(3, 9).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert_eq!(
        a.to_vec(),
        [1, 2, 30],
        "an out-of-bounds set writes nothing"
    );
    let empty = B::array::<u8>(0).unwrap();
    assert!(empty.is_empty());
    assert_eq!(empty.to_vec(), Vec::<u8>::new());
}

pub(crate) fn array_guard_and_to_vec_across_units<B: Backend>() {
    let n = 10_000usize;
    let a = B::array::<u64>(n).unwrap();
    let a2 = a.clone();
    B::spawn(move || {
        let mut g = a2.lock().unwrap();
        for (i, x) in g.iter_mut().enumerate() {
            *x = i as u64 * 3;
        }
    })
    .unwrap()
    .join()
    .unwrap();
    let v = a.to_vec();
    assert_eq!(v.len(), n);
    assert!(v.iter().enumerate().all(|(i, &x)| x == i as u64 * 3));
    let sum: u64 = a.lock().unwrap().iter().sum();
    assert_eq!(sum, 3 * (n as u64) * (n as u64 - 1) / 2);
}
