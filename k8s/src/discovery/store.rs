//! The pods of one watch, reduced to what discovery made of each: a target group or the reason it is not
//! one. A relist (`Init` … `InitDone`) is buffered and swapped in whole, so a half-done relist or a
//! failed one never shows a partial (or empty) list.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher::Event;
use surge_model::TargetGroup;

use super::pod::{PodRules, Skip, pod_target};

/// `namespace/name`.
type PodKey = (String, String);
type Outcome = Result<TargetGroup, Skip>;

/// One watch's view of its pods.
#[derive(Debug, Default)]
pub(crate) struct PodStore {
    pods: BTreeMap<PodKey, Outcome>,
    /// The relist in progress, if any.
    relist: Option<BTreeMap<PodKey, Outcome>>,
    /// A relist has completed at least once: until then this store knows nothing.
    synced: bool,
}

/// What one event did to a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Applied {
    /// The set of target groups may have changed: publish.
    TargetsChanged,
    /// A relist completed (the set may or may not have changed): publish.
    Relisted,
    /// Nothing a scraper would see changed.
    Unchanged,
}

impl PodStore {
    pub(crate) fn is_synced(&self) -> bool {
        self.synced
    }

    /// Applies one watcher event.
    pub(crate) fn apply(&mut self, event: Event<Pod>, rules: &PodRules) -> Applied {
        match event {
            Event::Init => {
                self.relist = Some(BTreeMap::new());
                Applied::Unchanged
            }
            Event::InitApply(pod) => {
                let (key, outcome) = evaluate(&pod, rules);
                log_transition(&key, self.pods.get(&key), &outcome);
                // The watcher sends `InitApply` only between `Init` and `InitDone`; a stray one is
                // treated as a plain update rather than lost.
                match self.relist.as_mut() {
                    Some(relist) => {
                        relist.insert(key, outcome);
                        Applied::Unchanged
                    }
                    None => self.update(key, outcome),
                }
            }
            Event::InitDone => {
                if let Some(relist) = self.relist.take() {
                    for key in self.pods.keys().filter(|k| !relist.contains_key(*k)) {
                        tracing::debug!(namespace = %key.0, pod = %key.1, "pod gone after relist");
                    }
                    self.pods = relist;
                }
                self.synced = true;
                Applied::Relisted
            }
            Event::Apply(pod) => {
                let (key, outcome) = evaluate(&pod, rules);
                log_transition(&key, self.pods.get(&key), &outcome);
                self.update(key, outcome)
            }
            Event::Delete(pod) => {
                let key = key_of(&pod);
                match self.pods.remove(&key) {
                    Some(Ok(_)) => {
                        tracing::debug!(namespace = %key.0, pod = %key.1, "pod deleted: target removed");
                        Applied::TargetsChanged
                    }
                    _ => Applied::Unchanged,
                }
            }
        }
    }

    fn update(&mut self, key: PodKey, outcome: Outcome) -> Applied {
        let changed = match self.pods.get(&key) {
            Some(old) => old.as_ref().ok() != outcome.as_ref().ok(),
            None => outcome.is_ok(),
        };
        self.pods.insert(key, outcome);
        if changed {
            Applied::TargetsChanged
        } else {
            Applied::Unchanged
        }
    }

    /// The current target groups, in `namespace/name` order.
    pub(crate) fn targets(&self) -> impl Iterator<Item = &TargetGroup> {
        self.pods.values().filter_map(|o| o.as_ref().ok())
    }
}

fn key_of(pod: &Pod) -> PodKey {
    (
        pod.metadata.namespace.clone().unwrap_or_default(),
        pod.metadata.name.clone().unwrap_or_default(),
    )
}

fn evaluate(pod: &Pod, rules: &PodRules) -> (PodKey, Outcome) {
    (key_of(pod), pod_target(pod, rules))
}

/// Logs a pod's outcome when it differs from the last one seen, so a pod's status updates do not repeat
/// the same line. Mistakes in annotations are warnings; normal states are debug lines.
fn log_transition(key: &PodKey, old: Option<&Outcome>, new: &Outcome) {
    let (namespace, pod) = (&key.0, &key.1);
    match (old, new) {
        (Some(Err(o)), Err(n)) if o == n => {}
        (_, Err(skip)) if skip.is_misconfiguration() => {
            tracing::warn!(%namespace, %pod, reason = %skip, "pod annotated for scraping is skipped");
        }
        (_, Err(skip)) => tracing::debug!(%namespace, %pod, reason = %skip, "pod is not a target"),
        (Some(Ok(o)), Ok(n)) if o == n => {}
        (_, Ok(g)) => {
            tracing::debug!(%namespace, %pod, targets = ?g.targets, "pod is a target")
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use surge_config::KubernetesSdConfig;

    use super::*;

    fn pod(name: &str, scrape: bool, ip: &str) -> Pod {
        let annotations = [
            ("prometheus.io/scrape".to_owned(), scrape.to_string()),
            ("prometheus.io/port".to_owned(), "9100".to_owned()),
        ];
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                annotations: Some(annotations.into_iter().collect()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some("n1".into()),
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some("Running".into()),
                pod_ip: Some(ip.into()),
                ..Default::default()
            }),
        }
    }

    fn addrs(s: &PodStore) -> Vec<String> {
        s.targets().flat_map(|g| g.targets.clone()).collect()
    }

    #[test]
    fn relist_is_swapped_in_whole() {
        let rules = PodRules::new(&KubernetesSdConfig::default());
        let mut s = PodStore::default();
        assert!(!s.is_synced());
        assert_eq!(s.apply(Event::Init, &rules), Applied::Unchanged);
        let a = pod("a", true, "127.0.0.2");
        assert_eq!(
            s.apply(Event::InitApply(a.clone()), &rules),
            Applied::Unchanged
        );
        assert_eq!(addrs(&s), Vec::<String>::new(), "nothing before InitDone");
        assert_eq!(s.apply(Event::InitDone, &rules), Applied::Relisted);
        assert!(s.is_synced());
        assert_eq!(addrs(&s), ["127.0.0.2:9100"]);

        // A relist that fails half-way (the watcher restarts it with a new Init) keeps the last good
        // list until one completes; a pod missing from the completed relist is gone.
        s.apply(Event::Init, &rules);
        s.apply(Event::InitApply(pod("b", true, "127.0.0.3")), &rules);
        assert_eq!(addrs(&s), ["127.0.0.2:9100"]);
        s.apply(Event::Init, &rules);
        assert_eq!(addrs(&s), ["127.0.0.2:9100"]);
        s.apply(Event::InitApply(pod("b", true, "127.0.0.3")), &rules);
        s.apply(Event::InitApply(pod("c", false, "127.0.0.4")), &rules);
        assert_eq!(s.apply(Event::InitDone, &rules), Applied::Relisted);
        assert_eq!(addrs(&s), ["127.0.0.3:9100"]);
    }

    #[test]
    fn updates_report_only_target_changes() {
        let rules = PodRules::new(&KubernetesSdConfig::default());
        let mut s = PodStore::default();
        s.apply(Event::Init, &rules);
        s.apply(Event::InitDone, &rules);
        let ch = |s: &mut PodStore, e| s.apply(e, &rules);
        assert_eq!(
            ch(&mut s, Event::Apply(pod("x", false, "127.0.0.9"))),
            Applied::Unchanged
        );
        assert_eq!(
            ch(&mut s, Event::Apply(pod("a", true, "127.0.0.2"))),
            Applied::TargetsChanged
        );
        assert_eq!(
            ch(&mut s, Event::Apply(pod("a", true, "127.0.0.2"))),
            Applied::Unchanged
        );
        assert_eq!(
            ch(&mut s, Event::Apply(pod("a", true, "127.0.0.5"))),
            Applied::TargetsChanged
        );
        assert_eq!(addrs(&s), ["127.0.0.5:9100"]);
        assert_eq!(
            ch(&mut s, Event::Apply(pod("a", false, "127.0.0.5"))),
            Applied::TargetsChanged
        );
        assert_eq!(addrs(&s), Vec::<String>::new());
        assert_eq!(
            ch(&mut s, Event::Delete(pod("a", false, "127.0.0.5"))),
            Applied::Unchanged
        );
        assert_eq!(
            ch(&mut s, Event::Apply(pod("b", true, "127.0.0.6"))),
            Applied::TargetsChanged
        );
        assert_eq!(
            ch(&mut s, Event::Delete(pod("b", true, "127.0.0.6"))),
            Applied::TargetsChanged
        );
        assert_eq!(
            ch(&mut s, Event::Delete(pod("zz", true, "127.0.0.6"))),
            Applied::Unchanged
        );
    }
}
