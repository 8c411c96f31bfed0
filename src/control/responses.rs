//! The control API's HTTP responses: XML answers (with ELB's request id header), the
//! status page, metrics and short plain-text errors, each a whole response in bytes.

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        405 => "Method Not Allowed",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    }
}

pub fn xml_response(status: u16, body: &str, request_id: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nx-amzn-RequestId: {request_id}\r\n\r\n{body}",
        reason(status),
        body.len()
    )
    .into_bytes()
}

/// `response` with one more header line after its status line.
pub fn with_header(response: Vec<u8>, name: &str, value: &str) -> Vec<u8> {
    let value: String = value.chars().filter(|c| !c.is_control()).collect();
    let Some(at) = response.windows(2).position(|w| w == b"\r\n") else {
        return response;
    };
    let mut out = Vec::with_capacity(response.len() + name.len() + value.len() + 4);
    out.extend_from_slice(&response[..at + 2]);
    out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    out.extend_from_slice(&response[at + 2..]);
    out
}

pub fn html_response(page: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nCache-Control: no-store\r\nContent-Length: {}\r\n\r\n{page}",
        page.len()
    )
    .into_bytes()
}

pub fn metrics_response(text: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\n\r\n{text}",
        text.len()
    )
    .into_bytes()
}

pub fn plain(status: u16, text: &str) -> Vec<u8> {
    let connection = if status >= 400 { "close" } else { "keep-alive" };
    format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: {connection}\r\n\r\n{text}",
        reason(status),
        text.len()
    )
    .into_bytes()
}
