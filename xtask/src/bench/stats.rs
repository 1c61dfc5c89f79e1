//! Statistics over a row's windows.

/// A row's CPU per request over that of the `bare` window just before, for
/// each of its windows: the median and the range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Paired {
    pub(super) median: f64,
    min: f64,
    max: f64,
}

impl Paired {
    /// `None` without ratios.
    pub(super) fn of(ratios: &mut [f64]) -> Option<Self> {
        ratios.sort_by(f64::total_cmp);
        let (&min, &max) = (ratios.first()?, ratios.last()?);
        let middle = ratios.len() / 2;
        let median = if ratios.len() % 2 == 1 {
            ratios[middle]
        } else {
            f64::midpoint(ratios[middle - 1], ratios[middle])
        };
        Some(Self { median, min, max })
    }
}

impl std::fmt::Display for Paired {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.2} ({:.2}-{:.2})", self.median, self.min, self.max)
    }
}

/// The mean; 0 without values.
pub(super) fn mean(values: impl ExactSizeIterator<Item = f64>) -> f64 {
    let count = values.len();
    values.sum::<f64>() / count.max(1) as f64
}

/// The middle item by `key` (the upper one of an even count); `None` when
/// there are none.
pub(super) fn median_by<T>(mut items: Vec<T>, key: impl Fn(&T) -> f64) -> Option<T> {
    items.sort_by(|a, b| key(a).total_cmp(&key(b)));
    let middle = items.len() / 2;
    items.into_iter().nth(middle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paired_ratios_give_their_median_and_range() {
        assert_eq!(Paired::of(&mut []), None);
        let odd = Paired::of(&mut [1.3, 1.1, 1.2]);
        assert_eq!(odd, Some(Paired { median: 1.2, min: 1.1, max: 1.3 }));
        let even = Paired::of(&mut [2.0, 1.0, 4.0, 3.0]);
        assert_eq!(even, Some(Paired { median: 2.5, min: 1.0, max: 4.0 }));
        assert_eq!(odd.map(|p| p.to_string()).as_deref(), Some("1.20 (1.10-1.30)"));
    }

    #[test]
    fn mean_and_median_window() {
        assert_eq!(mean([1.0, 2.0, 6.0].into_iter()), 3.0);
        assert_eq!(mean(std::iter::empty::<f64>().collect::<Vec<_>>().into_iter()), 0.0);
        assert_eq!(median_by(vec![3.0, 1.0, 2.0], |&x| x), Some(2.0));
        assert_eq!(median_by(vec![4.0, 1.0, 3.0, 2.0], |&x| x), Some(3.0));
        assert_eq!(median_by(Vec::<f64>::new(), |&x| x), None);
    }
}
