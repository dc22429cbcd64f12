//! Host bindings generated from `wit/`, the only copy of the contract: the
//! current package (`wit/leadgate.wit`, 0.2.1; its 0.2.0 components link
//! to it by semver) and the frozen 0.1.0 one (`wit/v0.1.0/`), which
//! `compat.rs` converts to the current types.

pub mod adapter {
    wasmtime::component::bindgen!({
        world: "crm-adapter",
        path: "../../wit",
        imports: { default: async },
        exports: { default: async },
    });
}

/// The `erasure` export (0.2.1) an adapter may add beside `adapter`: its
/// indices are looked up on their own, so a component without it (every
/// 0.2.0 one) still loads through [`adapter`].
pub mod erasure {
    wasmtime::component::bindgen!({
        world: "crm-adapter-with-erasure",
        path: "../../wit",
        imports: { default: async },
        exports: { default: async },
        with: {
            "leadgate:plugin/types": super::adapter::leadgate::plugin::types,
            "leadgate:plugin/http": super::adapter::leadgate::plugin::http,
            "leadgate:plugin/crypto": super::adapter::leadgate::plugin::crypto,
            "leadgate:plugin/log": super::adapter::leadgate::plugin::log,
            "leadgate:plugin/clock": super::adapter::leadgate::plugin::clock,
            "leadgate:plugin/kv": super::adapter::leadgate::plugin::kv,
        },
    });
}

pub mod transform {
    wasmtime::component::bindgen!({
        world: "source-transform",
        path: "../../wit",
        imports: { default: async },
        exports: { default: async },
        with: {
            "leadgate:plugin/log": super::adapter::leadgate::plugin::log,
            "leadgate:plugin/clock": super::adapter::leadgate::plugin::clock,
            "leadgate:plugin/kv": super::adapter::leadgate::plugin::kv,
        },
    });
}

/// `leadgate:plugin@0.1.0`.
pub mod v0_1 {
    pub mod adapter {
        wasmtime::component::bindgen!({
            world: "crm-adapter",
            path: "../../wit/v0.1.0",
            imports: { default: async },
            exports: { default: async },
        });
    }

    pub mod transform {
        wasmtime::component::bindgen!({
            world: "source-transform",
            path: "../../wit/v0.1.0",
            imports: { default: async },
            exports: { default: async },
            with: {
                "leadgate:plugin/log": super::adapter::leadgate::plugin::log,
                "leadgate:plugin/clock": super::adapter::leadgate::plugin::clock,
                "leadgate:plugin/kv": super::adapter::leadgate::plugin::kv,
            },
        });
    }
}
