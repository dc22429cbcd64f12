//! Host bindings generated from `wit/`, the only copy of the contract.

pub mod adapter {
    wasmtime::component::bindgen!({
        world: "crm-adapter",
        path: "../../wit",
        imports: { default: async },
        exports: { default: async },
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
