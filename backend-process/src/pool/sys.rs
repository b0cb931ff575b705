//! The OS plumbing the pool shares with [`spawn`](crate::spawn): forking, sockets, framing,
//! `poll`, `waitpid` (see [`os`](crate::os)).

pub(crate) use crate::os::*;
