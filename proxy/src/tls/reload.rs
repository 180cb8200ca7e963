//! Certificate rotation without a restart. Every configured certificate and key pair is looked at
//! once a second (modification time and length of both files, as `plan_file` watches plans); a
//! pair that changed is read and checked (both parse, the key is the certificate's) and swapped
//! into its slot, which every handshake after that reads. A pair that does not load is refused
//! and logged once per state of the files; the slot keeps the last good pair. Connections already
//! open keep the certificate they were made with until they close.

use std::{sync::Arc, time::Duration};

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;

use super::{
    Slot, TlsError,
    files::{PairFiles, Stamp},
};

/// How often the files are looked at.
pub const EVERY: Duration = Duration::from_secs(1);

/// One watched pair.
struct Watched {
    files: PairFiles,
    slot: Slot,
    /// The files as last loaded.
    loaded: Stamp,
    /// The files as last refused, so a bad state is logged once.
    refused: Option<Stamp>,
}

/// Every certificate pair the proxy uses, each loaded once however many listeners and services
/// use it.
#[derive(Default)]
pub struct Pairs {
    watched: Vec<Watched>,
}

impl std::fmt::Debug for Pairs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.watched.iter().map(|w| &w.files))
            .finish()
    }
}

impl Pairs {
    /// The slot of a pair, loading it the first time it is named.
    pub(super) fn slot(
        &mut self,
        files: PairFiles,
        provider: &CryptoProvider,
    ) -> Result<Slot, TlsError> {
        if let Some(w) = self
            .watched
            .iter()
            .find(|w| w.files.cert == files.cert && w.files.key == files.key)
        {
            return Ok(w.slot.clone());
        }
        let loaded = files.stamp();
        let slot = Arc::new(ArcSwap::new(files.load(provider)?));
        self.watched.push(Watched {
            files,
            slot: slot.clone(),
            loaded,
            refused: None,
        });
        Ok(slot)
    }

    /// Looks at every pair once; returns how many were swapped.
    pub fn poll(&mut self, provider: &CryptoProvider) -> usize {
        let mut swapped = 0;
        for w in &mut self.watched {
            let now = w.files.stamp();
            if now == w.loaded || Some(now) == w.refused {
                continue;
            }
            match w.files.load(provider) {
                Ok(pair) => {
                    w.slot.store(pair);
                    w.loaded = now;
                    w.refused = None;
                    swapped += 1;
                    tracing::info!(
                        field = %w.files.field,
                        cert = %w.files.cert.display(),
                        "certificate reloaded; new connections use it"
                    );
                }
                Err(e) => {
                    w.refused = Some(now);
                    tracing::warn!(error = %e, "certificate not reloaded; the previous one stays");
                }
            }
        }
        swapped
    }

    /// Looks at the files every `EVERY` until dropped.
    pub async fn watch(mut self, provider: Arc<CryptoProvider>) {
        if self.watched.is_empty() {
            return;
        }
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.poll(&provider);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::files::testing::*;

    #[test]
    fn a_changed_pair_is_swapped_and_a_broken_one_refused() {
        let d = dir("reload");
        let (_, issuer) = ca();
        let p = crate::tls::provider();
        let (c1, k1) = leaf(&issuer, &["a.example"], None);
        let cert = write(&d, "c.pem", &c1);
        let key = write(&d, "k.pem", &k1);
        let mut pairs = Pairs::default();
        let files = PairFiles::new("outbound.tls", &cert, &key);
        let slot = pairs.slot(files.clone(), &p).unwrap();
        // Named again elsewhere: the same slot.
        let again = pairs
            .slot(PairFiles::new("mesh_tls", &cert, &key), &p)
            .unwrap();
        assert!(Arc::ptr_eq(&slot, &again));
        let first = slot.load_full();
        assert_eq!(pairs.poll(&p), 0);

        // A certificate whose key is not there yet: refused, the old pair stays.
        let (c2, k2) = leaf(&issuer, &["a.example"], None);
        write(&d, "c.pem", &c2);
        assert_eq!(pairs.poll(&p), 0);
        assert!(Arc::ptr_eq(&slot.load_full(), &first));
        assert_eq!(pairs.poll(&p), 0, "a refused state is not tried again");

        // Its key arrives: swapped.
        write(&d, "k.pem", &k2);
        assert_eq!(pairs.poll(&p), 1);
        let second = slot.load_full();
        assert!(!Arc::ptr_eq(&second, &first));
        assert_eq!(
            second.cert[0].as_ref(),
            files.load(&p).unwrap().cert[0].as_ref()
        );

        // Garbage, then a missing key: the second pair stays throughout.
        write(&d, "c.pem", "not pem");
        assert_eq!(pairs.poll(&p), 0);
        std::fs::remove_file(&key).unwrap();
        assert_eq!(pairs.poll(&p), 0);
        assert!(Arc::ptr_eq(&slot.load_full(), &second));
        std::fs::remove_dir_all(&d).unwrap();
    }
}
