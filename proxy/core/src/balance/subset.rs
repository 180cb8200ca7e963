//! Deterministic subsetting by rendezvous (highest-random-weight) hashing: each proxy ranks every
//! endpoint by `hash(proxy identity, endpoint)` and keeps the top `k`. Adding or removing one
//! endpoint changes at most one member of any proxy's subset, and different proxies spread over
//! different endpoints.

/// 64-bit FNV-1a then a splitmix64 finaliser: stable across builds and platforms (unlike std's
/// hasher), and well mixed enough for ranking.
pub fn stable_hash(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for &b in *p {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Indices of the `k` endpoints (by key) that rank highest for `identity`, in index order.
/// `k == 0` or `k >= keys.len()` keeps every endpoint.
pub fn rendezvous<S: AsRef<str>>(identity: &str, keys: &[S], k: usize) -> Vec<usize> {
    if k == 0 || k >= keys.len() {
        return (0..keys.len()).collect();
    }
    let mut ranked: Vec<(u64, usize)> = keys
        .iter()
        .enumerate()
        .map(|(i, key)| {
            (
                stable_hash(&[identity.as_bytes(), key.as_ref().as_bytes()]),
                i,
            )
        })
        .collect();
    ranked.select_nth_unstable_by(k - 1, |a, b| b.cmp(a));
    let mut out: Vec<usize> = ranked[..k].iter().map(|&(_, i)| i).collect();
    out.sort_unstable();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn chosen(identity: &str, keys: &[String], k: usize) -> BTreeSet<String> {
        rendezvous(identity, keys, k)
            .into_iter()
            .map(|i| keys[i].clone())
            .collect()
    }

    proptest! {
        #[test]
        fn one_endpoint_joining_moves_at_most_one_slot(
            n in 2usize..40, k in 1usize..10, id in "[a-z]{1,8}", extra in 1000u32..2000,
        ) {
            let keys: Vec<String> = (0..n).map(|i| format!("10.0.0.{i}:80")).collect();
            let before = chosen(&id, &keys, k);
            let mut grown = keys.clone();
            grown.push(format!("10.0.1.{extra}:80"));
            let after = chosen(&id, &grown, k);
            prop_assert!(before.difference(&after).count() <= 1);
            prop_assert_eq!(after.len(), k.min(grown.len()));
            let mut shrunk = keys.clone();
            shrunk.remove(0);
            let after = chosen(&id, &shrunk, k);
            prop_assert!(before.difference(&after).count() <= 1);
        }
    }

    #[test]
    fn proxies_spread_over_endpoints() {
        let keys: Vec<String> = (0..20).map(|i| format!("ep{i}")).collect();
        let mut hits = vec![0; 20];
        for p in 0..200 {
            for i in rendezvous(&format!("proxy-{p}"), &keys, 3) {
                hits[i] += 1;
            }
        }
        // 600 slots over 20 endpoints: 30 each on average.
        assert!(hits.iter().all(|&h| (10..=55).contains(&h)), "{hits:?}");
    }
}
