//! The paper's metric, `analysis_allo_discrete` (PROTOCOL.md §4): the GPU
//! allocation ratio averaged over the submissions whose arrived load rounds
//! to x % of cluster capacity, for x = 0..=130.
//!
//! Follows the Python/numpy arithmetic bit for bit: `round(a / g / 10)`
//! (ties to even) for the bin, `round(u / g / 10, 2)` (correctly rounded,
//! ties to even) per sample, numpy's pairwise-summed mean and
//! `np.round(mean, 2)` (`rint(mean * 100) / 100`).

/// Values are kept as integer hundredths of a percent.
pub type Hundredths = i64;

/// One CSV row's worth of values, `None` for an empty cell.
pub type Curve = Vec<Option<Hundredths>>;

/// Discretises `(arrived, used)` GPU-milli samples for `x = 0..=max_x`.
pub fn allocation_curve(samples: &[(i64, i64)], total_gpus: i64, max_x: usize) -> Curve {
    let g = total_gpus as f64;
    let binned: Vec<(i64, f64)> = samples
        .iter()
        .map(|&(arrived, used)| {
            let bin = (arrived as f64 / g / 10.0).round_ties_even() as i64;
            let alloc = round_scaled_ties_even(used as f64 / g / 10.0, 100) as f64 / 100.0;
            (bin, alloc)
        })
        .collect();
    (0..=max_x as i64)
        .map(|x| {
            let mut bin: Vec<f64> = binned.iter().filter(|b| b.0 == x).map(|b| b.1).collect();
            if bin.is_empty() {
                bin = binned
                    .iter()
                    .filter(|b| (x - 1..=x + 1).contains(&b.0))
                    .map(|b| b.1)
                    .collect();
            }
            if bin.is_empty() {
                return None;
            }
            let mean = pairwise_sum(&bin) / bin.len() as f64;
            Some((mean * 100.0).round_ties_even() as i64)
        })
        .collect()
}

/// `v × scale` rounded to the nearest integer, ties to even, computed from
/// the exact binary value of `v` (what Python's `round(v, 2)` does).
pub fn round_scaled_ties_even(v: f64, scale: u64) -> i64 {
    if v == 0.0 || !v.is_finite() {
        return 0;
    }
    let sign = if v < 0.0 { -1 } else { 1 };
    let bits = v.abs().to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i32;
    let frac = bits & ((1u64 << 52) - 1);
    let (mant, e) = if exp == 0 {
        (frac, -1074)
    } else {
        (frac | (1u64 << 52), exp - 1075)
    };
    let product = u128::from(mant) * u128::from(scale);
    let q = if e >= 0 {
        product << e
    } else {
        let shift = (-e) as u32;
        if shift >= 127 {
            0
        } else {
            let q = product >> shift;
            let rem = product & ((1u128 << shift) - 1);
            let half = 1u128 << (shift - 1);
            if rem > half || (rem == half && q & 1 == 1) {
                q + 1
            } else {
                q
            }
        }
    };
    sign * q as i64
}

/// numpy's pairwise summation (`pairwise_sum_DOUBLE`, block size 128,
/// eight accumulators).
pub fn pairwise_sum(a: &[f64]) -> f64 {
    let n = a.len();
    if n < 8 {
        let mut res = 0.0;
        for &v in a {
            res += v;
        }
        res
    } else if n <= 128 {
        let mut r = [0.0f64; 8];
        r.copy_from_slice(&a[..8]);
        let mut i = 8;
        while i < n - n % 8 {
            for j in 0..8 {
                r[j] += a[i + j];
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        while i < n {
            res += a[i];
            i += 1;
        }
        res
    } else {
        let mut n2 = n / 2;
        n2 -= n2 % 8;
        pairwise_sum(&a[..n2]) + pairwise_sum(&a[n2..])
    }
}

/// Formats hundredths the way Python prints the rounded float
/// (`12.0`, `12.3`, `12.03`).
pub fn format_hundredths(h: Hundredths) -> String {
    let sign = if h < 0 { "-" } else { "" };
    let (int, frac) = (h.abs() / 100, h.abs() % 100);
    if frac % 10 == 0 {
        format!("{sign}{int}.{}", frac / 10)
    } else {
        format!("{sign}{int}.{frac:02}")
    }
}

/// Parses a cell like `95.14` or `12.0` into hundredths.
pub fn parse_hundredths(cell: &str) -> Option<Hundredths> {
    let v: f64 = cell.trim().parse().ok()?;
    Some((v * 100.0).round() as i64)
}

/// The CSV header: `workload,sc_policy,tune,seed,total_gpus,0,...,max_x`.
pub fn csv_header(max_x: usize) -> String {
    let mut s = String::from("workload,sc_policy,tune,seed,total_gpus");
    for x in 0..=max_x {
        s.push_str(&format!(",{x}"));
    }
    s
}

/// One CSV row in the shape of `expected_allo_discrete.csv`.
pub fn csv_row(
    workload: &str,
    policy: &str,
    tune: f64,
    seed: i64,
    total_gpus: i64,
    curve: &Curve,
) -> String {
    let mut s = format!("{workload},{policy},{tune:?},{seed},{total_gpus}");
    for v in curve {
        s.push(',');
        if let Some(h) = v {
            s.push_str(&format_hundredths(*h));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_rounding() {
        assert_eq!(round_scaled_ties_even(0.125, 100), 12);
        assert_eq!(round_scaled_ties_even(0.375, 100), 38);
        assert_eq!(round_scaled_ties_even(2.675, 100), 267); // 2.67499999…
        assert_eq!(round_scaled_ties_even(95.144_999, 100), 9514);
        assert_eq!(format_hundredths(1200), "12.0");
        assert_eq!(format_hundredths(1230), "12.3");
        assert_eq!(format_hundredths(1203), "12.03");
        assert_eq!(parse_hundredths("95.14"), Some(9514));
    }

    #[test]
    fn pairwise_sum_matches_plain_sum_on_exact_values() {
        let v: Vec<f64> = (0..1000).map(f64::from).collect();
        assert_eq!(pairwise_sum(&v), 499_500.0);
        assert_eq!(pairwise_sum(&v[..5]), 10.0);
    }

    #[test]
    fn bins_average_all_samples_and_fall_back_to_neighbours() {
        // Capacity 10 GPUs: 1 % = 100 milli.
        let samples = [(100, 100), (100, 50), (300, 300)];
        let curve = allocation_curve(&samples, 10, 4);
        assert_eq!(curve[0], Some(75)); // empty: falls back to bins -1..=1
        assert_eq!(curve[1], Some(75));
        assert_eq!(curve[2], Some(150)); // empty: mean of 1.0, 0.5, 3.0
        assert_eq!(curve[3], Some(300));
        assert_eq!(curve[4], Some(300));
    }
}
