//! Percentiles and means of measured samples.

use std::time::Duration;

use crate::server::Served;

/// Latencies in milliseconds, sorted.
#[derive(Clone, Debug, Default)]
pub struct Percentiles(Vec<f64>);

impl Percentiles {
    pub fn new(samples: impl IntoIterator<Item = Duration>) -> Self {
        let mut millis: Vec<f64> = samples.into_iter().map(|sample| sample.as_secs_f64() * 1000.0).collect();
        millis.sort_by(f64::total_cmp);
        Self(millis)
    }

    /// Nearest-rank percentile (`p` in 0..=100); 0 for no samples.
    pub fn at(&self, p: f64) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        let rank = ((p / 100.0) * self.0.len() as f64).ceil() as usize;
        self.0[rank.clamp(1, self.0.len()) - 1]
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }
}

/// What the server measured over a set of requests.
#[derive(Clone, Debug, Default)]
pub struct ServerSide {
    pub overhead: Percentiles,
    pub calls: f64,
    pub read_units: f64,
    /// Billed write units (see [`crate::billing`]) and, for comparison, what DynamoDB Local reported.
    pub write_units: f64,
    /// The same writes billed by the rule used until 2026-12 (see [`crate::billing`]).
    pub earlier_rule_write_units: f64,
    pub reported_write_units: f64,
}

impl ServerSide {
    /// Means per request; `None` when nothing was served.
    pub fn of(served: &[Served]) -> Option<Self> {
        if served.is_empty() {
            return None;
        }
        let count = served.len() as f64;
        let mean = |value: fn(&Served) -> f64| served.iter().map(value).sum::<f64>() / count;
        Some(Self {
            overhead: Percentiles::new(served.iter().map(Served::overhead)),
            calls: mean(|request| f64::from(request.dynamodb.calls)),
            read_units: mean(|request| request.dynamodb.read_units),
            write_units: mean(|request| request.billed_write_units),
            earlier_rule_write_units: mean(|request| request.earlier_rule_write_units),
            reported_write_units: mean(|request| request.dynamodb.write_units),
        })
    }
}

/// On-demand request prices in USD per million units (us-east-1, Standard table class, since the
/// November 2024 price change).
pub const USD_PER_MILLION_WRITE_UNITS: f64 = 0.625;
pub const USD_PER_MILLION_READ_UNITS: f64 = 0.125;

/// USD per million calls that consume these units each.
pub fn usd_per_million(read_units: f64, write_units: f64) -> f64 {
    read_units * USD_PER_MILLION_READ_UNITS + write_units * USD_PER_MILLION_WRITE_UNITS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples = Percentiles::new((1..=100).map(Duration::from_millis));
        assert!((samples.at(50.0) - 50.0).abs() < 1e-9);
        assert!((samples.at(99.0) - 99.0).abs() < 1e-9);
        assert!((samples.at(100.0) - 100.0).abs() < 1e-9);
        assert!((Percentiles::new([Duration::from_millis(7)]).at(50.0) - 7.0).abs() < 1e-9);
        assert!(Percentiles::default().at(50.0).abs() < 1e-9);
    }

    #[test]
    fn price_of_one_transactional_append() {
        // 0.5 read unit and 4 write units a call cost 0.0625 + 2.5 USD per million calls.
        assert!((usd_per_million(0.5, 4.0) - 2.5625).abs() < 1e-9);
    }
}
