//! How every scenario starts its bots: one connector ([`connector`]) and one ramp-up
//! ([`due`]), so that the chat swarm and the arena swarm connect alike.

use std::time::Instant;

use config::ClientConfig;
use net::{ClientService, ServiceEvent};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The connector of a swarm: at most `client.connect_concurrency` connects (and set-ups) in
/// flight, each within `client.login_timeout_secs`; what happens goes to `events`.
pub fn connector(
    config: &ClientConfig,
    events: mpsc::Sender<ServiceEvent>,
    stop: CancellationToken,
    tracker: TaskTracker,
) -> ClientService {
    ClientService::new(
        events,
        config.client.connect_concurrency,
        config.client.login_timeout(),
        stop,
        tracker,
    )
}

/// How many of `total` bots have started by `now` when they start at `per_sec` a second from
/// `started_at`: the first at once, then at that rate, never more than `total`.
pub fn due(started_at: Instant, now: Instant, per_sec: u64, total: u64) -> u64 {
    let elapsed = now.saturating_duration_since(started_at).as_secs_f64();
    ((elapsed * per_sec as f64) as u64)
        .saturating_add(1)
        .min(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bots_start_at_the_rate_the_first_at_once_and_never_more_than_all() {
        let t0 = Instant::now();
        assert_eq!(due(t0, t0, 100, 1000), 1);
        assert_eq!(due(t0, t0 + Duration::from_millis(500), 100, 1000), 51);
        assert_eq!(due(t0, t0 + Duration::from_secs(60), 100, 1000), 1000);
        assert_eq!(due(t0, t0 + Duration::from_secs(1), 100, 0), 0);
    }
}
