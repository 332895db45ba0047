//! An Aho-Corasick DFA driven by a search loop of our own.
//!
//! `AhoCorasick::find_iter` reaches its automaton through a trait object and re-enters a
//! generic search routine for every match; on prose, where the keyword automaton matches every
//! ~30 bytes ("st", "pl" and "ct" inside words included), that costs about as much as the
//! transitions themselves. Here the transition loop is monomorphic and inlined, and a match is
//! handed to a closure. The semantics are the crate's own: non-overlapping matches, each
//! search resuming where the previous match ended; a leftmost-longest automaton reports the
//! longest match at the leftmost start, a standard one the first match to end.

use aho_corasick::automaton::{Automaton, StateID};
use aho_corasick::dfa::DFA;
use aho_corasick::{Anchored, MatchKind, StartKind};

pub struct Dfa {
    dfa: DFA,
    /// Standard semantics: a search stops at its first match state.
    earliest: bool,
    unanchored: Option<StateID>,
    anchored: Option<StateID>,
}

impl Dfa {
    /// A DFA over `patterns` (none of them empty).
    pub fn new<P: AsRef<[u8]>>(
        patterns: &[P],
        kind: MatchKind,
        ascii_case_insensitive: bool,
        start: StartKind,
    ) -> Result<Self, String> {
        if patterns.iter().any(|p| p.as_ref().is_empty()) {
            return Err("empty pattern".into());
        }
        let dfa = DFA::builder()
            .match_kind(kind)
            .ascii_case_insensitive(ascii_case_insensitive)
            .start_kind(start)
            // Without a prefilter only dead and match states are special, which the loops
            // below rely on.
            .prefilter(false)
            .build(patterns)
            .map_err(|e| e.to_string())?;
        Ok(Self {
            earliest: kind == MatchKind::Standard,
            unanchored: dfa.start_state(Anchored::No).ok(),
            anchored: dfa.start_state(Anchored::Yes).ok(),
            dfa,
        })
    }

    /// Calls `f(pattern, start, end)` for every non-overlapping match in `hay`, in order.
    /// Nothing happens when the DFA was built for anchored searches only.
    #[inline]
    pub fn for_each(&self, hay: &[u8], mut f: impl FnMut(usize, usize, usize)) {
        let Some(start) = self.unanchored else { return };
        let d = &self.dfa;
        let mut at = 0;
        while at < hay.len() {
            let mut sid = start;
            let mut found = None;
            for (k, &c) in hay[at..].iter().enumerate() {
                let i = at + k;
                sid = d.next_state(Anchored::No, sid, c);
                if d.is_special(sid) {
                    if d.is_dead(sid) {
                        break;
                    }
                    if d.is_match(sid) {
                        found = Some((d.match_pattern(sid, 0), i + 1));
                        if self.earliest {
                            break;
                        }
                    }
                }
            }
            let Some((pid, end)) = found else { return };
            f(pid.as_usize(), end - d.pattern_len(pid), end);
            at = end;
        }
    }

    /// The match starting exactly at `at` (longest or first, as built): (pattern, end).
    #[inline]
    pub fn find_at(&self, hay: &[u8], at: usize) -> Option<(usize, usize)> {
        let d = &self.dfa;
        let mut sid = self.anchored?;
        let mut found = None;
        for (k, &c) in hay.get(at..)?.iter().enumerate() {
            let i = at + k;
            sid = d.next_state(Anchored::Yes, sid, c);
            if d.is_special(sid) {
                if d.is_dead(sid) {
                    break;
                }
                if d.is_match(sid) {
                    let pid = d.match_pattern(sid, 0);
                    // Match states also carry matches that start later (reached through a
                    // failure transition in the unanchored part); those do not count.
                    if i + 1 - d.pattern_len(pid) == at {
                        found = Some((pid.as_usize(), i + 1));
                        if self.earliest {
                            break;
                        }
                    }
                }
            }
        }
        found
    }
}
