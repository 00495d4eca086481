//! Reading the daemon's Prometheus text (SPEC §7 names): the sum of one metric over all its
//! label sets, e.g. `payhook_published_total` over every source.

/// Sum of every sample of `name` (exactly that name, any labels); None when it is absent.
pub fn sum(text: &str, name: &str) -> Option<f64> {
    let mut total = None;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let value = if let Some(labels) = rest.strip_prefix('{') {
            match labels.rfind('}') {
                Some(i) => &labels[i + 1..],
                None => continue,
            }
        } else if rest.starts_with(' ') {
            rest
        } else {
            continue; // a longer name that starts with this one
        };
        if let Some(v) = value
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
        {
            *total.get_or_insert(0.0) += v;
        }
    }
    total
}

/// `payhook_requests_total` with this outcome label, over every source.
pub fn requests(text: &str, outcome: &str) -> f64 {
    let needle = format!("outcome=\"{outcome}\"");
    text.lines()
        .filter(|l| l.starts_with("payhook_requests_total{") && l.contains(&needle))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

/// A condition on a metric, written `NAME>=N` or `NAME<=N`.
#[derive(Debug, Clone)]
pub struct Condition {
    pub name: String,
    pub at_least: bool,
    pub value: f64,
}

impl std::str::FromStr for Condition {
    type Err = String;
    fn from_str(s: &str) -> Result<Condition, String> {
        let (name, at_least, v) = if let Some((n, v)) = s.split_once(">=") {
            (n, true, v)
        } else if let Some((n, v)) = s.split_once("<=") {
            (n, false, v)
        } else {
            return Err(format!("{s:?}: expected NAME>=N or NAME<=N"));
        };
        let value = v
            .trim()
            .parse()
            .map_err(|_| format!("{s:?}: {v:?} is not a number"))?;
        Ok(Condition {
            name: name.trim().to_string(),
            at_least,
            value,
        })
    }
}

impl Condition {
    pub fn holds(&self, text: &str) -> bool {
        match sum(text, &self.name) {
            Some(v) if self.at_least => v >= self.value,
            Some(v) => v <= self.value,
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# TYPE payhook_published_total counter\n\
        payhook_published_total{source=\"a\"} 3\n\
        payhook_published_total{source=\"b\"} 4\n\
        payhook_published_total_extra 100\n\
        payhook_backlog_events 0\n\
        payhook_store_batch_events_sum 120\n\
        payhook_store_batch_events_count 10\n\
        payhook_requests_total{source=\"a\",outcome=\"accepted\"} 5\n\
        payhook_requests_total{source=\"b\",outcome=\"accepted\"} 6\n\
        payhook_requests_total{source=\"b\",outcome=\"duplicate\"} 1\n";

    #[test]
    fn sums_over_labels() {
        assert_eq!(sum(TEXT, "payhook_published_total"), Some(7.0));
        assert_eq!(sum(TEXT, "payhook_backlog_events"), Some(0.0));
        assert_eq!(sum(TEXT, "payhook_store_batch_events_sum"), Some(120.0));
        assert_eq!(sum(TEXT, "payhook_missing"), None);
        assert_eq!(requests(TEXT, "accepted"), 11.0);
    }

    #[test]
    fn conditions() {
        let c: Condition = "payhook_published_total>=7".parse().expect("parse");
        assert!(c.holds(TEXT));
        let c: Condition = "payhook_backlog_events<=0".parse().expect("parse");
        assert!(c.holds(TEXT));
        assert!("x=1".parse::<Condition>().is_err());
    }
}
