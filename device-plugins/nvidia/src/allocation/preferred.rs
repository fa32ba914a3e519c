//! Preferred allocation: of the sets of `size` available GPUs that contain
//! the must-include ones, prefer the set spanning the fewest NVLink islands,
//! then the most NVLinks between its members, then the fewest NUMA nodes,
//! then the lowest indices (so answers are stable).
//!
//! Small machines (every machine with up to 16 GPUs in practice) are searched
//! exhaustively; beyond a bound the set is grown greedily.

use std::collections::{BTreeMap, BTreeSet};

use crate::gpu::GpuInfo;
use crate::topology::nvlink_islands;

/// Most candidate sets scored exhaustively before falling back to greedy.
const EXHAUSTIVE_LIMIT: u128 = 20_000;

/// Lower is better.
type Score = (usize, std::cmp::Reverse<u64>, usize, u64);

struct Scorer<'a> {
    by_id: BTreeMap<&'a str, &'a GpuInfo>,
    islands: BTreeMap<String, String>,
}

impl Scorer<'_> {
    fn score(&self, set: &[&str]) -> Score {
        let gpus: Vec<&GpuInfo> = set
            .iter()
            .filter_map(|id| self.by_id.get(id).copied())
            .collect();
        let islands: BTreeSet<&str> = gpus
            .iter()
            .map(|g| {
                self.islands
                    .get(&g.id)
                    .map_or(g.id.as_str(), String::as_str)
            })
            .collect();
        let links: u64 = gpus
            .iter()
            .enumerate()
            .flat_map(|(i, a)| {
                gpus[i + 1..]
                    .iter()
                    .map(move |b| u64::from(a.links_to(&b.id)))
            })
            .sum();
        let numa: BTreeSet<Option<i64>> = gpus.iter().map(|g| g.numa_node).collect();
        let indices = gpus.iter().map(|g| u64::from(g.index)).sum();
        (islands.len(), std::cmp::Reverse(links), numa.len(), indices)
    }
}

fn binomial(n: usize, k: usize) -> u128 {
    (0..k as u128).fold(1, |acc, i| acc * (n as u128 - i) / (i + 1))
}

/// Picks `size` device IDs from `available`, always including
/// `must_include`. Unknown IDs are never chosen; when fewer than `size` known
/// GPUs are available, all of them are returned.
pub fn preferred_allocation(
    gpus: &[GpuInfo],
    available: &[String],
    must_include: &[String],
    size: usize,
) -> Vec<String> {
    let scorer = Scorer {
        by_id: gpus.iter().map(|g| (g.id.as_str(), g)).collect(),
        islands: nvlink_islands(gpus),
    };
    let mut chosen: Vec<&str> = Vec::new();
    for id in must_include {
        if !chosen.contains(&id.as_str()) {
            chosen.push(id);
        }
    }
    let mut pool: Vec<&str> = available
        .iter()
        .map(String::as_str)
        .filter(|id| scorer.by_id.contains_key(id) && !chosen.contains(id))
        .collect();
    pool.sort_by_key(|id| scorer.by_id[id].index);
    pool.dedup();
    let need = size.saturating_sub(chosen.len()).min(pool.len());
    if need == 0 {
        return chosen.into_iter().map(str::to_string).collect();
    }
    if binomial(pool.len(), need) <= EXHAUSTIVE_LIMIT {
        let mut best: Option<(Score, Vec<&str>)> = None;
        let mut pick = Vec::with_capacity(need);
        search(&scorer, &pool, 0, need, &chosen, &mut pick, &mut best);
        if let Some((_, set)) = best {
            chosen.extend(set);
        }
    } else {
        for _ in 0..need {
            let next = pool
                .iter()
                .filter(|id| !chosen.contains(id))
                .min_by_key(|id| {
                    let mut trial = chosen.clone();
                    trial.push(id);
                    scorer.score(&trial)
                })
                .copied();
            chosen.extend(next);
        }
    }
    chosen.into_iter().map(str::to_string).collect()
}

fn search<'a>(
    scorer: &Scorer<'_>,
    pool: &[&'a str],
    from: usize,
    need: usize,
    must: &[&'a str],
    pick: &mut Vec<&'a str>,
    best: &mut Option<(Score, Vec<&'a str>)>,
) {
    if pick.len() == need {
        let set: Vec<&str> = must.iter().chain(pick.iter()).copied().collect();
        let score = scorer.score(&set);
        if best.as_ref().is_none_or(|(b, _)| score < *b) {
            *best = Some((score, pick.clone()));
        }
        return;
    }
    for i in from..pool.len() {
        if pool.len() - i < need - pick.len() {
            break;
        }
        pick.push(pool[i]);
        search(scorer, pool, i + 1, need, must, pick, best);
        pick.pop();
    }
}

#[cfg(test)]
#[path = "preferred_tests.rs"]
mod tests;
