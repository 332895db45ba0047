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
    /// The longest pattern's length.
    max_len: usize,
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
            max_len: patterns.iter().map(|p| p.as_ref().len()).max().unwrap_or(0),
            earliest: kind == MatchKind::Standard,
            unanchored: dfa.start_state(Anchored::No).ok(),
            anchored: dfa.start_state(Anchored::Yes).ok(),
            dfa,
        })
    }

    /// Calls `f(pattern, start, end)` for every non-overlapping match in `hay`, in order.
    /// Nothing happens when the DFA was built for anchored searches only.
    ///
    /// A DFA step waits on the previous one (a dependent table load), so a long haystack is
    /// searched as two halves in one loop, their steps interleaved. The second half's search
    /// starts fresh at the midpoint; a search is a function of where it starts, so its matches
    /// are the true ones unless a true match straddles the midpoint. In that case the search
    /// resumes after the straddling match until it reports a match the second half also found,
    /// from where on both agree.
    pub fn for_each(&self, hay: &[u8], mut f: impl FnMut(usize, usize, usize)) {
        let Some(start) = self.unanchored else { return };
        let n = hay.len();
        if n < 8 * self.max_len.max(64) {
            let mut s = Search::at(0, start);
            while let Some(m) = self.advance(&mut s, hay, n) {
                f(m.0, m.1, m.2);
            }
            return;
        }
        let d = &self.dfa;
        let mid = n / 2;
        let (mut a, mut b) = (Search::at(0, start), Search::at(mid, start));
        let mut second: Vec<(usize, usize, usize)> = Vec::new();
        let mut state = Half::Running;
        let a_emit = |m: (usize, usize, usize), f: &mut dyn FnMut(usize, usize, usize)| {
            if m.1 >= mid {
                // The second half's first match.
                return Half::Clean;
            }
            f(m.0, m.1, m.2);
            match m.2 {
                e if e > mid => Half::Straddle(e),
                e if e == mid => Half::Clean,
                _ => Half::Running,
            }
        };
        // Both halves step together while both have bytes left.
        let a_lim = (mid + self.max_len).min(n);
        while a.i < a_lim && b.i < n && !a.done && !b.done {
            a.sid = d.next_state(Anchored::No, a.sid, hay[a.i]);
            a.i += 1;
            if d.is_special(a.sid) {
                if let Some(m) = a.special(self, start) {
                    state = a_emit(m, &mut f);
                    if state != Half::Running {
                        break;
                    }
                }
            }
            b.sid = d.next_state(Anchored::No, b.sid, hay[b.i]);
            b.i += 1;
            if d.is_special(b.sid) {
                if let Some(m) = b.special(self, start) {
                    second.push(m);
                }
            }
        }
        // The first half runs on until its next search starts in the second half.
        while state == Half::Running {
            if a.done {
                state = Half::Ended;
            } else if a.i >= n {
                state = match a.report(self, start) {
                    Some(m) => a_emit(m, &mut f),
                    None => Half::Ended,
                };
            } else if a.found.is_none() && a.i >= mid + self.max_len {
                // Any match this search finds from here starts past the midpoint.
                state = Half::Clean;
            } else {
                a.sid = d.next_state(Anchored::No, a.sid, hay[a.i]);
                a.i += 1;
                if d.is_special(a.sid) {
                    if let Some(m) = a.special(self, start) {
                        state = a_emit(m, &mut f);
                    }
                }
            }
        }
        match state {
            Half::Clean => {
                for m in second {
                    f(m.0, m.1, m.2);
                }
                while let Some(m) = self.advance(&mut b, hay, n) {
                    f(m.0, m.1, m.2);
                }
            }
            Half::Straddle(e) => {
                while let Some(m) = self.advance(&mut b, hay, n) {
                    second.push(m);
                }
                let mut s = Search::at(e, start);
                while let Some(m) = self.advance(&mut s, hay, n) {
                    f(m.0, m.1, m.2);
                    if let Ok(k) = second.binary_search_by_key(&m.1, |x| x.1) {
                        if second[k] == m {
                            for x in &second[k + 1..] {
                                f(x.0, x.1, x.2);
                            }
                            return;
                        }
                    }
                }
            }
            Half::Running | Half::Ended => {}
        }
    }

    /// Runs `s` until it reports a match, or until `limit` when that is before the end of
    /// `hay`. None at the end of the matches.
    #[inline]
    fn advance(&self, s: &mut Search, hay: &[u8], limit: usize) -> Option<(usize, usize, usize)> {
        let start = self.unanchored?;
        let d = &self.dfa;
        while s.i < limit && !s.done {
            s.sid = d.next_state(Anchored::No, s.sid, hay[s.i]);
            s.i += 1;
            if d.is_special(s.sid) {
                if let Some(m) = s.special(self, start) {
                    return Some(m);
                }
            }
        }
        if s.i >= hay.len() && !s.done {
            return s.report(self, start);
        }
        None
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

/// Where the first half's search stands when the halves are joined.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Half {
    Running,
    /// No true match straddles the midpoint: the second half's matches are the true ones.
    Clean,
    /// A true match ends here, past the midpoint.
    Straddle(usize),
    /// No more matches.
    Ended,
}

/// One unanchored search in progress: the next byte, the state, the longest match so far.
struct Search {
    i: usize,
    sid: StateID,
    found: Option<(aho_corasick::PatternID, usize)>,
    done: bool,
}

impl Search {
    fn at(i: usize, start: StateID) -> Self {
        Self {
            i,
            sid: start,
            found: None,
            done: false,
        }
    }

    /// The special state just entered: a match to report when the search is over.
    #[inline]
    fn special(&mut self, d: &Dfa, start: StateID) -> Option<(usize, usize, usize)> {
        if d.dfa.is_dead(self.sid) {
            return self.report(d, start);
        }
        if d.dfa.is_match(self.sid) {
            self.found = Some((d.dfa.match_pattern(self.sid, 0), self.i));
            if d.earliest {
                return self.report(d, start);
            }
        }
        None
    }

    /// Ends the search: its match, the next search starting where it ends; without one, no
    /// more matches.
    fn report(&mut self, d: &Dfa, start: StateID) -> Option<(usize, usize, usize)> {
        let Some((pid, end)) = self.found.take() else {
            self.done = true;
            return None;
        };
        self.i = end;
        self.sid = start;
        Some((pid.as_usize(), end - d.dfa.pattern_len(pid), end))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aho_corasick::AhoCorasickBuilder;

    fn xorshift(x: &mut u64) -> u64 {
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        *x
    }

    fn same_as_find_iter(patterns: &[Vec<u8>], kind: MatchKind, ci: bool, hay: &[u8]) {
        let ac = AhoCorasickBuilder::new()
            .kind(Some(aho_corasick::AhoCorasickKind::DFA))
            .match_kind(kind)
            .ascii_case_insensitive(ci)
            .build(patterns)
            .unwrap();
        let want: Vec<_> = ac
            .find_iter(hay)
            .map(|m| (m.pattern().as_usize(), m.start(), m.end()))
            .collect();
        let d = Dfa::new(patterns, kind, ci, StartKind::Unanchored).unwrap();
        let mut got = Vec::new();
        d.for_each(hay, |p, s, e| got.push((p, s, e)));
        assert_eq!(got, want, "{kind:?} {:?}", String::from_utf8_lossy(hay));
    }

    #[test]
    fn matches_are_the_crates_at_any_length_and_split() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for round in 0..400 {
            // Few letters and many overlapping patterns, so matches straddle the midpoint.
            let alphabet = b"abcAB c";
            let mut patterns: Vec<Vec<u8>> = (0..(2 + round % 12))
                .map(|_| {
                    let len = 1 + (xorshift(&mut x) % 7) as usize;
                    (0..len)
                        .map(|_| alphabet[(xorshift(&mut x) % 7) as usize])
                        .collect()
                })
                .collect();
            patterns.sort();
            patterns.dedup();
            let len = (xorshift(&mut x) % 3000) as usize;
            let hay: Vec<u8> = (0..len)
                .map(|_| alphabet[(xorshift(&mut x) % 7) as usize])
                .collect();
            for kind in [MatchKind::LeftmostLongest, MatchKind::Standard] {
                same_as_find_iter(&patterns, kind, round % 2 == 0, &hay);
            }
        }
    }
}
