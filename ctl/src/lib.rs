//! dmvpn-ctl: the `dmvpnctl` operator CLI (see `src/main.rs`); subcommands live in their own modules.
