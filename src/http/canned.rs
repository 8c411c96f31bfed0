//! The answers clb writes itself, with ELB's status lines (spec §11).
//!
//! Every one has `Content-Length: 0`. The `Connection` header says whether the client
//! connection stays open: 503 and 504 keep it (as ELB does) when the request was fully
//! read; malformed input and timeouts close it.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Canned {
    BadRequest,
    MethodNotAllowed,
    RequestTimeout,
    UriTooLong,
    HeadersTooLarge,
    BadGateway,
    ServiceUnavailable,
    GatewayTimeout,
}

macro_rules! answer {
    ($line:literal, $conn:literal) => {
        concat!(
            $line,
            "\r\nContent-Length: 0\r\nConnection: ",
            $conn,
            "\r\n\r\n"
        )
        .as_bytes()
    };
}

impl Canned {
    pub fn status(self) -> u16 {
        match self {
            Canned::BadRequest => 400,
            Canned::MethodNotAllowed => 405,
            Canned::RequestTimeout => 408,
            Canned::UriTooLong => 414,
            Canned::HeadersTooLarge => 431,
            Canned::BadGateway => 502,
            Canned::ServiceUnavailable => 503,
            Canned::GatewayTimeout => 504,
        }
    }

    /// Whether ELB keeps the client connection after this answer (request fully read).
    pub fn keeps_connection(self) -> bool {
        matches!(
            self,
            Canned::ServiceUnavailable | Canned::GatewayTimeout | Canned::BadGateway
        )
    }

    pub fn bytes(self, keep_alive: bool) -> &'static [u8] {
        match (self, keep_alive) {
            (Canned::BadRequest, _) => answer!("HTTP/1.1 400 BAD_REQUEST", "close"),
            (Canned::MethodNotAllowed, _) => answer!("HTTP/1.1 405 METHOD_NOT_ALLOWED", "close"),
            (Canned::RequestTimeout, _) => answer!("HTTP/1.1 408 REQUEST_TIMEOUT", "close"),
            (Canned::UriTooLong, _) => answer!("HTTP/1.1 414 URI_TOO_LONG", "close"),
            (Canned::HeadersTooLarge, _) => {
                answer!("HTTP/1.1 431 REQUEST_HEADER_FIELDS_TOO_LARGE", "close")
            }
            (Canned::BadGateway, true) => answer!("HTTP/1.1 502 BAD_GATEWAY", "keep-alive"),
            (Canned::BadGateway, false) => answer!("HTTP/1.1 502 BAD_GATEWAY", "close"),
            (Canned::ServiceUnavailable, true) => {
                answer!(
                    "HTTP/1.1 503 Service Unavailable: Back-end server is at capacity",
                    "keep-alive"
                )
            }
            (Canned::ServiceUnavailable, false) => {
                answer!(
                    "HTTP/1.1 503 Service Unavailable: Back-end server is at capacity",
                    "close"
                )
            }
            (Canned::GatewayTimeout, true) => answer!("HTTP/1.1 504 GATEWAY_TIMEOUT", "keep-alive"),
            (Canned::GatewayTimeout, false) => answer!("HTTP/1.1 504 GATEWAY_TIMEOUT", "close"),
        }
    }
}

impl fmt::Display for Canned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.status())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_have_elb_status_lines_and_no_body() {
        let text = std::str::from_utf8(Canned::ServiceUnavailable.bytes(true)).unwrap();
        assert_eq!(
            text,
            "HTTP/1.1 503 Service Unavailable: Back-end server is at capacity\r\n\
             Content-Length: 0\r\nConnection: keep-alive\r\n\r\n"
        );
        for canned in [
            Canned::BadRequest,
            Canned::MethodNotAllowed,
            Canned::RequestTimeout,
        ] {
            let bytes = canned.bytes(true);
            assert!(bytes.ends_with(b"Connection: close\r\n\r\n"));
        }
    }
}
