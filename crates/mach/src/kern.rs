//! Return codes: `kern_return_t`, `mach_msg_return_t`, MIG's and the
//! device interface's, with GNU Mach's values.

use core::fmt;

/// A `kern_return_t` / `mach_msg_return_t` / MIG or device error code.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct KernReturn(pub i32);

macro_rules! codes {
    ($($name:ident = $val:expr, $doc:literal;)*) => {
        impl KernReturn {
            $(#[doc = $doc] pub const $name: Self = Self($val);)*

            /// The symbolic name, if this is a known code.
            #[must_use]
            pub fn name(self) -> Option<&'static str> {
                match self.0 {
                    $(v if v == $val => Some(stringify!($name)),)*
                    _ => None,
                }
            }
        }
    };
}

codes! {
    SUCCESS = 0, "`KERN_SUCCESS`.";
    INVALID_ADDRESS = 1, "`KERN_INVALID_ADDRESS`.";
    PROTECTION_FAILURE = 2, "`KERN_PROTECTION_FAILURE`.";
    NO_SPACE = 3, "`KERN_NO_SPACE`.";
    INVALID_ARGUMENT = 4, "`KERN_INVALID_ARGUMENT`.";
    FAILURE = 5, "`KERN_FAILURE`.";
    RESOURCE_SHORTAGE = 6, "`KERN_RESOURCE_SHORTAGE`.";
    NOT_RECEIVER = 7, "`KERN_NOT_RECEIVER`.";
    NO_ACCESS = 8, "`KERN_NO_ACCESS`.";
    INVALID_NAME = 15, "`KERN_INVALID_NAME`.";
    INVALID_TASK = 16, "`KERN_INVALID_TASK`.";
    INVALID_RIGHT = 17, "`KERN_INVALID_RIGHT`.";
    INVALID_VALUE = 18, "`KERN_INVALID_VALUE`.";
    UREFS_OVERFLOW = 19, "`KERN_UREFS_OVERFLOW`.";
    INVALID_CAPABILITY = 20, "`KERN_INVALID_CAPABILITY`.";
    RIGHT_EXISTS = 21, "`KERN_RIGHT_EXISTS`.";
    NAME_EXISTS = 23, "`KERN_NAME_EXISTS`.";

    SEND_IN_PROGRESS = 0x1000_0001, "`MACH_SEND_IN_PROGRESS`.";
    SEND_INVALID_DATA = 0x1000_0002, "`MACH_SEND_INVALID_DATA`.";
    SEND_INVALID_DEST = 0x1000_0003, "`MACH_SEND_INVALID_DEST`.";
    SEND_TIMED_OUT = 0x1000_0004, "`MACH_SEND_TIMED_OUT`.";
    SEND_WILL_NOTIFY = 0x1000_0005, "`MACH_SEND_WILL_NOTIFY`.";
    SEND_NOTIFY_IN_PROGRESS = 0x1000_0006, "`MACH_SEND_NOTIFY_IN_PROGRESS`.";
    SEND_INTERRUPTED = 0x1000_0007, "`MACH_SEND_INTERRUPTED`.";
    SEND_MSG_TOO_SMALL = 0x1000_0008, "`MACH_SEND_MSG_TOO_SMALL`.";
    SEND_INVALID_REPLY = 0x1000_0009, "`MACH_SEND_INVALID_REPLY`.";
    SEND_INVALID_RIGHT = 0x1000_000a, "`MACH_SEND_INVALID_RIGHT`.";
    SEND_INVALID_NOTIFY = 0x1000_000b, "`MACH_SEND_INVALID_NOTIFY`.";
    SEND_INVALID_MEMORY = 0x1000_000c, "`MACH_SEND_INVALID_MEMORY`.";
    SEND_NO_BUFFER = 0x1000_000d, "`MACH_SEND_NO_BUFFER`.";
    SEND_NO_NOTIFY = 0x1000_000e, "`MACH_SEND_NO_NOTIFY`.";
    SEND_INVALID_TYPE = 0x1000_000f, "`MACH_SEND_INVALID_TYPE`.";
    SEND_INVALID_HEADER = 0x1000_0010, "`MACH_SEND_INVALID_HEADER`.";

    RCV_IN_PROGRESS = 0x1000_4001, "`MACH_RCV_IN_PROGRESS`.";
    RCV_INVALID_NAME = 0x1000_4002, "`MACH_RCV_INVALID_NAME`.";
    RCV_TIMED_OUT = 0x1000_4003, "`MACH_RCV_TIMED_OUT`.";
    RCV_TOO_LARGE = 0x1000_4004, "`MACH_RCV_TOO_LARGE`.";
    RCV_INTERRUPTED = 0x1000_4005, "`MACH_RCV_INTERRUPTED`.";
    RCV_PORT_CHANGED = 0x1000_4006, "`MACH_RCV_PORT_CHANGED`.";
    RCV_INVALID_NOTIFY = 0x1000_4007, "`MACH_RCV_INVALID_NOTIFY`.";
    RCV_INVALID_DATA = 0x1000_4008, "`MACH_RCV_INVALID_DATA`.";
    RCV_PORT_DIED = 0x1000_4009, "`MACH_RCV_PORT_DIED`.";
    RCV_IN_SET = 0x1000_400a, "`MACH_RCV_IN_SET`.";
    RCV_HEADER_ERROR = 0x1000_400b, "`MACH_RCV_HEADER_ERROR`.";
    RCV_BODY_ERROR = 0x1000_400c, "`MACH_RCV_BODY_ERROR`.";

    MIG_TYPE_ERROR = -300, "`MIG_TYPE_ERROR`: a type descriptor did not match.";
    MIG_REPLY_MISMATCH = -301, "`MIG_REPLY_MISMATCH`: wrong reply id.";
    MIG_REMOTE_ERROR = -302, "`MIG_REMOTE_ERROR`.";
    MIG_BAD_ID = -303, "`MIG_BAD_ID`: unknown routine.";
    MIG_BAD_ARGUMENTS = -304, "`MIG_BAD_ARGUMENTS`: wrong size or count.";
    MIG_NO_REPLY = -305, "`MIG_NO_REPLY`: the server replies later (or never).";
    MIG_EXCEPTION = -306, "`MIG_EXCEPTION`.";
    MIG_ARRAY_TOO_LARGE = -307, "`MIG_ARRAY_TOO_LARGE`.";
    MIG_SERVER_DIED = -308, "`MIG_SERVER_DIED`.";
    MIG_DESTROY_REQUEST = -309, "`MIG_DESTROY_REQUEST`.";

    D_IO_ERROR = 2500, "`D_IO_ERROR`.";
    D_WOULD_BLOCK = 2501, "`D_WOULD_BLOCK`.";
    D_NO_SUCH_DEVICE = 2502, "`D_NO_SUCH_DEVICE`.";
    D_ALREADY_OPEN = 2503, "`D_ALREADY_OPEN`.";
    D_DEVICE_DOWN = 2504, "`D_DEVICE_DOWN`.";
    D_INVALID_OPERATION = 2505, "`D_INVALID_OPERATION`.";
    D_INVALID_RECNUM = 2506, "`D_INVALID_RECNUM`.";
    D_INVALID_SIZE = 2507, "`D_INVALID_SIZE`.";
    D_NO_MEMORY = 2508, "`D_NO_MEMORY`.";
    D_READ_ONLY = 2509, "`D_READ_ONLY`.";
}

impl KernReturn {
    /// `Ok(())` for `KERN_SUCCESS`, else `Err(self)`.
    pub fn result(self) -> Result<(), Self> {
        if self == Self::SUCCESS {
            Ok(())
        } else {
            Err(self)
        }
    }

    /// A `MACH_SEND_*` error: the message was not sent, and the rights it
    /// carried are still the sender's.
    #[must_use]
    pub fn is_send_error(self) -> bool {
        self.0 & !0xfff == 0x1000_0000
    }
}

impl fmt::Debug for KernReturn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => write!(f, "{n} ({:#x})", self.0),
            None => write!(f, "kern_return {:#x}", self.0),
        }
    }
}

impl fmt::Display for KernReturn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl core::error::Error for KernReturn {}
