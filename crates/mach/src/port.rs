//! Port names, right dispositions and type names of typed messages.

/// A port name in some IPC space (`mach_port_name_t`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Default)]
#[repr(transparent)]
pub struct PortName(pub u32);

impl PortName {
    /// `MACH_PORT_NULL`.
    pub const NULL: Self = Self(0);
    /// `MACH_PORT_DEAD`.
    pub const DEAD: Self = Self(!0);

    /// Neither null nor dead.
    #[must_use]
    pub fn is_valid(self) -> bool {
        self != Self::NULL && self != Self::DEAD
    }
}

/// `MACH_MSG_TYPE_*` values: right dispositions in headers and port
/// descriptors, and the data type names of typed items.
pub mod type_name {
    /// Unstructured bits.
    pub const UNSTRUCTURED: u8 = 0;
    /// A bit.
    pub const BIT: u8 = 0;
    /// `boolean_t`.
    pub const BOOLEAN: u8 = 0;
    /// 16-bit integer.
    pub const INTEGER_16: u8 = 1;
    /// 32-bit integer.
    pub const INTEGER_32: u8 = 2;
    /// A character.
    pub const CHAR: u8 = 8;
    /// A byte.
    pub const BYTE: u8 = 9;
    /// 8-bit integer.
    pub const INTEGER_8: u8 = 9;
    /// 32-bit real.
    pub const REAL: u8 = 10;
    /// 64-bit integer.
    pub const INTEGER_64: u8 = 11;
    /// A C string.
    pub const STRING: u8 = 12;
    /// A C string (same as `STRING`).
    pub const STRING_C: u8 = 12;
    /// A port name, no right.
    pub const PORT_NAME: u8 = 15;
    /// Move a receive right.
    pub const MOVE_RECEIVE: u8 = 16;
    /// Move a send right.
    pub const MOVE_SEND: u8 = 17;
    /// Move a send-once right.
    pub const MOVE_SEND_ONCE: u8 = 18;
    /// Copy a send right.
    pub const COPY_SEND: u8 = 19;
    /// Make a send right from a receive right.
    pub const MAKE_SEND: u8 = 20;
    /// Make a send-once right from a receive right.
    pub const MAKE_SEND_ONCE: u8 = 21;

    /// What a receiver finds for a right sent with `disp`:
    /// `MACH_MSG_TYPE_PORT_RECEIVE` (16), `PORT_SEND` (17) or
    /// `PORT_SEND_ONCE` (18).
    #[must_use]
    pub fn received(disp: u8) -> Option<u8> {
        match disp {
            MOVE_RECEIVE => Some(MOVE_RECEIVE),
            MOVE_SEND | COPY_SEND | MAKE_SEND => Some(MOVE_SEND),
            MOVE_SEND_ONCE | MAKE_SEND_ONCE => Some(MOVE_SEND_ONCE),
            _ => None,
        }
    }

    /// Whether `name` carries a port right (or a bare name).
    #[must_use]
    pub fn is_port(name: u8) -> bool {
        (PORT_NAME..=MAKE_SEND_ONCE).contains(&name)
    }
}

/// Kinds of rights a name can denote (`MACH_PORT_RIGHT_*`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u32)]
pub enum Right {
    /// Send.
    Send = 0,
    /// Receive.
    Receive = 1,
    /// Send-once.
    SendOnce = 2,
    /// Port set.
    PortSet = 3,
    /// Dead name.
    DeadName = 4,
}

/// Notification message ids (`mach/notify.h`).
pub mod notify {
    /// A right with a dead-name request was deleted.
    pub const PORT_DELETED: i32 = 0o101;
    /// A receive right was destroyed while a port-destroyed request existed.
    pub const PORT_DESTROYED: i32 = 0o105;
    /// The last send right went away.
    pub const NO_SENDERS: i32 = 0o106;
    /// A send-once right was destroyed unused.
    pub const SEND_ONCE: i32 = 0o107;
    /// The port a send right names died.
    pub const DEAD_NAME: i32 = 0o110;
}
