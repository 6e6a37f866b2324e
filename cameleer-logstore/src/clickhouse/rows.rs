//! What an append sends: the batch as `RowBinary`, without the keys the
//! table has; and which keys it must ask the table about first.
//!
//! The store remembers, per deployment, the seq that follows the lines it
//! stored itself ([`Tails`]). A batch that continues exactly there has no
//! line in the table (nothing this store wrote, and, since the last check,
//! nothing another writer could have left beyond it), so it goes without a
//! read; any other batch (the first of a deployment after a restart, the
//! one after a failed append, an overlapping one) reads the stored keys
//! from its lowest seq up first.

use std::collections::{BTreeMap, HashMap, HashSet};

use cameleer_runtime::logs::StoredLine;
use cameleer_runtime::{AppRef, DeploymentId, LogSource};

/// The columns of a row, in the order [`row_binary`] writes them.
pub(super) const COLUMNS: &str =
    "tenant, app, env, deployment, version, ts, stream, seq, line, instance";

/// A deployment's lines in one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Span {
    /// Its lowest seq.
    pub min: u64,
    /// Its highest seq.
    pub max: u64,
    /// Whether every seq is above the one before (no key twice).
    pub increasing: bool,
}

/// A deployment of an app, the unit of [`Tails`].
pub(super) type Key = (AppRef, DeploymentId);

/// The spans of `lines`, per app and deployment.
pub(super) fn spans(lines: &[StoredLine]) -> BTreeMap<Key, Span> {
    let mut out: BTreeMap<Key, Span> = BTreeMap::new();
    for l in lines {
        match out.get_mut(&(l.app.clone(), l.deployment)) {
            Some(s) => {
                s.increasing &= l.seq > s.max;
                s.min = s.min.min(l.seq);
                s.max = s.max.max(l.seq);
            }
            None => {
                out.insert(
                    (l.app.clone(), l.deployment),
                    Span {
                        min: l.seq,
                        max: l.seq,
                        increasing: true,
                    },
                );
            }
        }
    }
    out
}

/// Per deployment, the seq after the last line this store appended, when
/// it knows that the table holds none of its lines from there on.
#[derive(Debug, Default)]
pub(super) struct Tails {
    next: HashMap<Key, u64>,
}

impl Tails {
    /// Takes out the batch's deployments (an append that does not finish
    /// leaves them unknown) and returns those that must be checked: the
    /// ones whose span does not start at their tail.
    pub(super) fn take(&mut self, spans: &BTreeMap<Key, Span>) -> Vec<(Key, Span)> {
        spans
            .iter()
            .filter(|(k, s)| self.next.remove(*k) != Some(s.min))
            .map(|(k, s)| (k.clone(), *s))
            .collect()
    }

    /// After a stored batch: each deployment ends at its span's end, unless
    /// the table had lines beyond it (`stored_max`; then it stays unknown).
    pub(super) fn stored(
        &mut self,
        spans: BTreeMap<Key, Span>,
        stored_max: &HashMap<DeploymentId, u64>,
    ) {
        for (k, s) in spans {
            if stored_max.get(&k.1).is_none_or(|m| *m <= s.max) {
                self.next.insert(k, s.max + 1);
            }
        }
    }
}

/// `lines` as `RowBinary` in [`COLUMNS`] order, leaving out the keys in
/// `stored` and any key seen before in the batch (only looked for where
/// `spans` says a deployment's seqs do not increase). Returns the body and
/// how many rows it holds.
pub(super) fn row_binary(
    lines: &[StoredLine],
    spans: &BTreeMap<Key, Span>,
    stored: &HashSet<(DeploymentId, u64)>,
) -> (Vec<u8>, usize) {
    let all_increasing = spans.values().all(|s| s.increasing);
    let mut seen: HashSet<(DeploymentId, u64)> = HashSet::new();
    let bytes: usize = lines.iter().map(|l| l.line.len() + 96).sum();
    let mut out = Vec::with_capacity(bytes);
    let mut rows = 0;
    for l in lines {
        let key = (l.deployment, l.seq);
        if (!stored.is_empty() && stored.contains(&key)) || (!all_increasing && !seen.insert(key)) {
            continue;
        }
        string(&mut out, l.app.tenant.as_str().as_bytes());
        string(&mut out, l.app.app.as_str().as_bytes());
        string(&mut out, l.app.env.as_str().as_bytes());
        let mut hex = [0u8; 32];
        string(
            &mut out,
            l.deployment
                .as_uuid()
                .simple()
                .encode_lower(&mut hex)
                .as_bytes(),
        );
        out.extend_from_slice(&l.version.to_le_bytes());
        out.extend_from_slice(&l.timestamp_nanos().to_le_bytes());
        out.push(match l.stream {
            LogSource::Stdout => 0,
            LogSource::Stderr => 1,
        });
        out.extend_from_slice(&l.seq.to_le_bytes());
        string(&mut out, l.line.as_bytes());
        // Nullable: a null flag, then the value when there is one.
        match l.instance {
            None => out.push(1),
            Some(i) => {
                out.push(0);
                out.extend_from_slice(&i.to_le_bytes());
            }
        }
        rows += 1;
    }
    (out, rows)
}

/// A `RowBinary` string: its length as LEB128, then its bytes.
fn string(out: &mut Vec<u8>, s: &[u8]) {
    let mut n = s.len() as u64;
    while n >= 0x80 {
        out.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
    out.extend_from_slice(s);
}

#[cfg(test)]
mod tests {
    use cameleer_runtime::testkit::logs::line;

    use super::*;

    fn app() -> AppRef {
        AppRef::parse("acme", "orders", "prod").unwrap()
    }

    #[test]
    fn strings_carry_their_length_as_leb128() {
        let mut out = Vec::new();
        string(&mut out, b"ab");
        assert_eq!(out, b"\x02ab");
        out.clear();
        let long = vec![b'x'; 300];
        string(&mut out, &long);
        assert_eq!(&out[..2], &[0xac, 0x02]);
        assert_eq!(out.len(), 302);
    }

    #[test]
    fn a_row_is_its_columns_in_order() {
        let d = DeploymentId::new_random();
        let l = line(&app(), d, 7, 3, 5, "hi\tthere\n");
        let s = spans(std::slice::from_ref(&l));
        let (body, rows) = row_binary(std::slice::from_ref(&l), &s, &HashSet::new());
        assert_eq!(rows, 1);
        let mut want = Vec::new();
        for part in ["acme", "orders", "prod"] {
            string(&mut want, part.as_bytes());
        }
        string(&mut want, d.as_uuid().simple().to_string().as_bytes());
        want.extend_from_slice(&7u64.to_le_bytes());
        want.extend_from_slice(&l.timestamp_nanos().to_le_bytes());
        want.push(0);
        want.extend_from_slice(&3u64.to_le_bytes());
        string(&mut want, b"hi\tthere\n");
        // Seq 3's instance is 0: not null, then the value.
        assert_eq!(l.instance, Some(0));
        want.push(0);
        want.extend_from_slice(&0u32.to_le_bytes());
        assert_eq!(body, want);

        // Without an instance: the null flag alone.
        let none = StoredLine {
            instance: None,
            ..l
        };
        let (body, _) = row_binary(std::slice::from_ref(&none), &s, &HashSet::new());
        assert_eq!(body.len(), want.len() - 4);
        assert_eq!(body.last(), Some(&1));
    }

    #[test]
    fn stored_keys_and_repeats_are_left_out() {
        let d = DeploymentId::new_random();
        let lines: Vec<StoredLine> = [0, 1, 2, 1]
            .into_iter()
            .map(|s| line(&app(), d, 1, s, s as i64, "x"))
            .collect();
        let s = spans(&lines);
        assert!(!s[&(app(), d)].increasing);
        let (_, rows) = row_binary(&lines, &s, &HashSet::from([(d, 0)]));
        assert_eq!(rows, 2, "seq 0 is stored and seq 1 comes twice");
    }

    #[test]
    fn only_a_batch_that_continues_a_tail_goes_unchecked() {
        let d = DeploymentId::new_random();
        let batch = |from: u64, to: u64| {
            let lines: Vec<StoredLine> = (from..to)
                .map(|s| line(&app(), d, 1, s, s as i64, "x"))
                .collect();
            spans(&lines)
        };
        let mut tails = Tails::default();
        assert_eq!(tails.take(&batch(0, 10)).len(), 1, "unknown: checked");
        tails.stored(batch(0, 10), &HashMap::new());
        assert!(
            tails.take(&batch(10, 20)).is_empty(),
            "continues: unchecked"
        );
        // The append of 10..20 did not finish: the tail is unknown again.
        assert_eq!(tails.take(&batch(10, 20)).len(), 1);
        tails.stored(batch(10, 20), &HashMap::new());
        assert_eq!(tails.take(&batch(5, 25)).len(), 1, "overlapping: checked");
        // The table had lines past the batch (another writer's): unknown.
        tails.stored(batch(5, 25), &HashMap::from([(d, 40)]));
        assert_eq!(tails.take(&batch(25, 30)).len(), 1);
    }
}
