//! The Lua scripts, each prefixed with the shared prelude. `redis::Script` loads a script
//! once per server and calls it by hash afterwards.

use std::sync::LazyLock;

use redis::Script;

macro_rules! script {
    ($name:ident, $file:literal) => {
        pub static $name: LazyLock<Script> = LazyLock::new(|| {
            Script::new(concat!(
                include_str!("../lua/prelude.lua"),
                include_str!(concat!("../lua/", $file))
            ))
        });
    };
}

script!(ENQUEUE, "enqueue.lua");
script!(FETCH, "fetch.lua");
script!(START, "start.lua");
script!(FINISH, "finish.lua");
script!(PROMOTE, "promote.lua");
script!(HEARTBEAT, "heartbeat.lua");
script!(RECLAIM, "reclaim.lua");
script!(CANCEL, "cancel.lua");
script!(REQUEUE, "requeue.lua");
script!(REVIVE, "revive.lua");
