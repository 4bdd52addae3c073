//! The Lua scripts, loaded once and invoked by SHA (EVALSHA; reloaded on NOSCRIPT).
//!
//! Each counter script is `apply.lua` (bucket pruning, window sums, and the counter-plus-bucket update)
//! followed by its body, so those rules are written once. Every script touches the keys of one provider key
//! only, which share a hash tag, so scripts are single-slot on Redis Cluster.

use redis::Script;

const INCREMENT_SRC: &str = concat!(
    include_str!("lua/apply.lua"),
    include_str!("lua/increment.lua")
);
const WINDOW_SRC: &str = concat!(
    include_str!("lua/apply.lua"),
    include_str!("lua/window.lua")
);
const INCREMENT_ONCE_SRC: &str = concat!(
    include_str!("lua/apply.lua"),
    include_str!("lua/increment_once.lua")
);
/// Period counters (see [`crate::period`]) need none of the window prelude.
const PERIOD_RESERVE_SRC: &str = include_str!("lua/period_reserve.lua");
const PERIOD_ADD_SRC: &str = include_str!("lua/period_add.lua");
const RESERVE_SRC: &str = concat!(
    include_str!("lua/apply.lua"),
    include_str!("lua/reserve.lua")
);

/// A script with its source, which `SCRIPT LOAD` needs.
#[derive(Debug)]
pub struct LuaScript {
    pub source: &'static str,
    pub script: Script,
}

impl LuaScript {
    fn new(source: &'static str) -> Self {
        Self {
            source,
            script: Script::new(source),
        }
    }

    /// The SHA1 that EVALSHA names.
    pub fn sha(&self) -> &str {
        self.script.get_hash()
    }
}

/// The scripts of the Redis backend.
#[derive(Debug)]
pub struct Scripts {
    pub increment: LuaScript,
    pub increment_once: LuaScript,
    pub window: LuaScript,
    pub reserve: LuaScript,
    pub period_reserve: LuaScript,
    pub period_add: LuaScript,
}

impl Scripts {
    pub fn new() -> Self {
        Self {
            increment: LuaScript::new(INCREMENT_SRC),
            increment_once: LuaScript::new(INCREMENT_ONCE_SRC),
            window: LuaScript::new(WINDOW_SRC),
            reserve: LuaScript::new(RESERVE_SRC),
            period_reserve: LuaScript::new(PERIOD_RESERVE_SRC),
            period_add: LuaScript::new(PERIOD_ADD_SRC),
        }
    }

    pub fn all(&self) -> [&LuaScript; 6] {
        [
            &self.increment,
            &self.increment_once,
            &self.window,
            &self.reserve,
            &self.period_reserve,
            &self.period_add,
        ]
    }
}

impl Default for Scripts {
    fn default() -> Self {
        Self::new()
    }
}
