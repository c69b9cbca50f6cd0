//! Blocking client of the daemon socket.
