"""Fleet gallery sync on a device: verifying signed, versioned bundles and applying them atomically.

Device wiring (the daemon)::

    policy = DevicePolicy(fleet, model_sha256, expiry_policy)
    sync = GallerySyncClient(SyncClientSettings(policy, device_id, prefix), public_key,
                             GalleryStore(state_dir / "gallery"), on_gallery=updater.apply)
    PahoTransport.attach_to(mqtt_client, sync)

Modules: `manifest` (the signed JSON), `bundle` (container + stateless checks), `signing` (Ed25519
verification), `delta` (applying a delta), `chunks` (MQTT announcement and chunking), `apply` (device
checks + atomic write), `rawio` (large payloads without long GIL holds), `client` (the device state
machine), `mqtt` (paho binding), `updater` (index swap), `validate` (bounds shared by server and device),
`signed_calibration` (the gallery's calibration in the manifest), `throttle` (log and state rate limits), `settings` (the
client's settings), `fetch` (payloads by URL), `plan` (catch-up by a chain of deltas), `timestamp` and
`freshness` (the signed timestamp record and the door's view of it), `trust` (plain key or root-certified
keys, revocation). Building, signing
and publishing bundles is server side, in `edgeface.server`, which nothing here imports.

`valid_fleet(name) -> str` (raises `ValueError`) is exported here for the config loader.
"""

from edgeface.sync.validate import valid_fleet

__all__ = ["valid_fleet"]
