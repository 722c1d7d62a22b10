//! Consolidation: each candidate against what the user already has. Rules, not the model's word:
//! a deleted fact (tombstone) is never added again; a fact known already — the same words, or
//! words a known memory of the same type covers — is skipped; a correction the model pointed at
//! supersedes the memory it corrects only when both are of one type and share a word (a small
//! model points anywhere); everything else is added.

use std::collections::HashSet;

use domain::{Memory, MemoryId};

use super::candidates::{Candidate, words};

/// What becomes of a candidate.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    Add(Candidate),
    /// Add it, and the older memory leaves lists and contexts (kept, with `superseded_by`).
    Update {
        candidate: Candidate,
        supersedes: MemoryId,
    },
    Skip {
        candidate: Candidate,
        why: Skip,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    /// The user deleted this fact once.
    Tombstoned,
    /// A memory says it already.
    Known,
}

/// Decides each candidate. `known`: the memories shown to the model, in the order it numbered
/// them (its `replaces` points into it); `existing`: every live memory of the scopes concerned;
/// `tombstones`: fingerprints of deleted extracted memories.
pub fn consolidate(
    candidates: Vec<Candidate>,
    known: &[&Memory],
    existing: &[Memory],
    tombstones: &HashSet<String>,
) -> Vec<Decision> {
    let mut superseded = HashSet::new();
    candidates
        .into_iter()
        .map(|candidate| {
            let print = candidate.fingerprint();
            if tombstones.contains(&print) {
                return Decision::Skip { candidate, why: Skip::Tombstoned };
            }
            if existing.iter().any(|memory| says_already(memory, &candidate, &print)) {
                return Decision::Skip { candidate, why: Skip::Known };
            }
            let corrected = candidate.replaces.and_then(|index| known.get(index)).filter(|old| {
                old.memory_type == candidate.memory_type
                    && !words(old.content.as_str()).is_disjoint(&words(candidate.content.as_str()))
            });
            match corrected {
                Some(old) if superseded.insert(old.id) => Decision::Update { candidate, supersedes: old.id },
                _ => Decision::Add(candidate),
            }
        })
        .collect()
}

/// The same words, or (same type) every word of the candidate is in the memory already.
fn says_already(memory: &Memory, candidate: &Candidate, print: &str) -> bool {
    let theirs = memory.content.fingerprint();
    if theirs == print {
        return true;
    }
    memory.memory_type == candidate.memory_type && {
        let theirs: HashSet<&str> = theirs.split(' ').collect();
        print.split(' ').all(|word| theirs.contains(word))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::{Importance, MemoryContent, MemoryOrigin, MemoryType, Timestamp};

    fn content(text: &str) -> MemoryContent {
        let Ok(content) = MemoryContent::parse(text.to_owned()) else { panic!("content") };
        content
    }

    fn candidate(text: &str, memory_type: MemoryType, replaces: Option<usize>) -> Candidate {
        Candidate {
            memory_type,
            content: content(text),
            importance: Importance::DEFAULT,
            session_only: false,
            replaces,
        }
    }

    fn memory(text: &str, memory_type: MemoryType) -> Memory {
        let Some(at) = Timestamp::from_unix_seconds(1_700_000_000) else { panic!("time") };
        Memory {
            id: MemoryId::generate(),
            session_id: None,
            memory_type,
            content: content(text),
            importance: Importance::DEFAULT,
            origin: MemoryOrigin::Extracted,
            source: None,
            superseded_by: None,
            created_at: at,
            updated_at: at,
        }
    }

    #[test]
    fn a_deleted_fact_is_never_added_again_whatever_its_case_or_punctuation() {
        let tombstones = HashSet::from(["the users name is anna".to_owned()]);
        let decisions =
            consolidate(vec![candidate("The user's NAME is Anna!", MemoryType::Fact, None)], &[], &[], &tombstones);
        assert!(matches!(decisions[0], Decision::Skip { why: Skip::Tombstoned, .. }));
    }

    #[test]
    fn a_known_fact_is_skipped_and_a_covered_one_too_but_not_across_types() {
        let existing = vec![memory("The user lives in Berlin with two cats", MemoryType::Fact)];
        let decisions = consolidate(
            vec![
                candidate("the user lives in berlin with two cats.", MemoryType::Fact, None),
                candidate("The user lives in Berlin", MemoryType::Fact, None),
                candidate("The user lives in Berlin", MemoryType::Preference, None),
                candidate("The user lives in Munich", MemoryType::Fact, None),
            ],
            &[],
            &existing,
            &HashSet::new(),
        );
        assert!(matches!(decisions[0], Decision::Skip { why: Skip::Known, .. }));
        assert!(matches!(decisions[1], Decision::Skip { why: Skip::Known, .. }));
        assert!(matches!(decisions[2], Decision::Add(_)));
        assert!(matches!(decisions[3], Decision::Add(_)), "no correction was pointed at: both stand");
    }

    #[test]
    fn a_correction_supersedes_only_a_memory_of_its_type_that_shares_a_word_and_only_once() {
        let berlin = memory("The user lives in Berlin", MemoryType::Fact);
        let tea = memory("The user loves green tea", MemoryType::Preference);
        let known = vec![&berlin, &tea];
        let decisions = consolidate(
            vec![
                candidate("The user lives in Munich now", MemoryType::Fact, Some(0)),
                candidate("The user moved to Hamburg", MemoryType::Fact, Some(1)),
                candidate("The user lives in Munich and works there", MemoryType::Fact, Some(0)),
            ],
            &known,
            &[berlin.clone(), tea.clone()],
            &HashSet::new(),
        );
        assert_eq!(
            decisions[0],
            Decision::Update {
                candidate: candidate("The user lives in Munich now", MemoryType::Fact, Some(0)),
                supersedes: berlin.id
            }
        );
        assert!(matches!(decisions[1], Decision::Add(_)), "a preference is not corrected by a fact");
        assert!(matches!(decisions[2], Decision::Add(_)), "one memory is superseded once");
    }
}
