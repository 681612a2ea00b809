//! Mir's wire contracts, free of I/O so that devices can depend on them.
//!
//! Layout:
//! - [`wire`]: the `mir.wire.v1` envelopes (prost types) exchanged on MQTT.
//! - [`device`]: the `mir.device.v1` schema annotations (Mir compatible).
//! - [`topics`]: topic names, building and parsing (docs/architecture.md, Topics and
//!   rule events).
//! - [`DeviceId`]: a validated device id (= MQTT client id = AWS thing name).
//! - [`MIR_DESCRIPTOR_SET`]: encoded descriptor set of the Mir protos, for schema
//!   registries that need to resolve imports of `mir/device/v1/mir.proto`.
//! - `examples` (feature `examples`): the weather device of Mir's SDK tutorial.
//!
//! Architecture: see docs/architecture.md in the repository (section Wire messages and schemas).

pub mod aws;
pub mod topics;

mod device_id;
pub use device_id::{DeviceId, InvalidDeviceId};

/// `mir.wire.v1`: envelopes on the wire.
pub mod wire {
    include!(concat!(env!("OUT_DIR"), "/mir.wire.v1.rs"));
}

/// `mir.device.v1`: schema annotations.
pub mod device {
    include!(concat!(env!("OUT_DIR"), "/mir.device.v1.rs"));
}

/// Encoded `FileDescriptorSet` of `mir/device/v1/mir.proto` and
/// `mir/wire/v1/envelopes.proto` with their imports.
pub const MIR_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/mir_descriptor_set.bin"));

/// Source of `mir/device/v1/mir.proto`, for tools that compile device schemas.
pub const MIR_DEVICE_PROTO: &str = include_str!("../mir/device/v1/mir.proto");

/// Largest MQTT payload AWS IoT Core accepts (128 KB).
pub const MAX_PAYLOAD_BYTES: usize = 128 * 1024;

/// Most unacknowledged QoS 1 publishes a client may have in flight (AWS IoT Core limit).
pub const MAX_INFLIGHT: u16 = 100;

#[cfg(feature = "examples")]
pub mod examples {
    //! The weather device of Mir's SDK tutorial (`proto/examples/weather`).

    /// `schema.v1` generated types.
    pub mod weather {
        include!(concat!(env!("OUT_DIR"), "/schema.v1.rs"));

        /// Encoded `FileDescriptorSet` of the weather schema with its imports: what the
        /// device sends in its `Hello`.
        pub const DESCRIPTOR_SET: &[u8] =
            include_bytes!(concat!(env!("OUT_DIR"), "/weather_descriptor_set.bin"));

        /// The schema source, for tools that compile it (swarm, CLI).
        pub const SCHEMA_PROTO: &str = include_str!("../examples/weather/schema/v1/schema.proto");
    }
}
