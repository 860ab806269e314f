"""What a device's gallery-sync client is configured with (`[device]`, `[mqtt] prefix` and `[sync]`): the
`DevicePolicy` its bundles are checked against, and how it fetches and reports them."""

from __future__ import annotations

from dataclasses import dataclass, field

from edgeface.mqtt.topics import DeviceTopics, fleet_gallery, fleet_gallery_chunks, fleet_timestamp
from edgeface.sync.apply import DevicePolicy
from edgeface.sync.fetch import UrlFetchSettings


@dataclass(frozen=True, slots=True)
class SyncClientSettings:
    policy: DevicePolicy  # which bundles this door accepts: its fleet, embedder, expiry and size bounds
    device_id: str
    prefix: str = "edgeface"
    fetch_timeout_s: float = 30.0
    fetch_retries: int = 5  # re-subscriptions after the first timeout, then `chunk_missing` for good
    fetch_backoff_max_s: float = 300.0
    state_interval_s: float = 1.0  # retained state: a burst of 5, then at most one per interval
    timestamp_required: bool = False  # stale (see `freshness`) until a valid signed timestamp arrives
    url: UrlFetchSettings = field(
        default_factory=UrlFetchSettings
    )  # payloads named by URL in the signed manifest

    def __post_init__(self) -> None:
        if not (self.fetch_timeout_s > 0 and self.fetch_backoff_max_s >= self.fetch_timeout_s):
            raise ValueError("sync: need fetch_timeout_s > 0 and fetch_backoff_max_s >= fetch_timeout_s")
        if self.fetch_retries < 0 or self.state_interval_s <= 0:
            raise ValueError("sync: fetch_retries must be >= 0 and state_interval_s > 0")

    def retry_delay(self, attempt: int) -> float:
        """Seconds to wait for the chunks after re-subscription `attempt` (1, 2, ...): doubling, capped."""
        return min(self.fetch_timeout_s * 2.0 ** min(attempt, 32), self.fetch_backoff_max_s)

    @property
    def fleet(self) -> str:
        return self.policy.fleet

    @property
    def gallery_topic(self) -> str:
        return fleet_gallery(self.prefix, self.fleet)

    def chunk_filter(self, version: int | None = None) -> str:
        """Subscription filter for gallery `version`'s chunks (every version's when None)."""
        return fleet_gallery_chunks(self.prefix, self.fleet, version)

    @property
    def timestamp_topic(self) -> str:
        return fleet_timestamp(self.prefix, self.fleet)

    @property
    def state_topic(self) -> str:
        return DeviceTopics(self.prefix, self.device_id).gallery_state
