//! `--proxy-protocol` (DESIGN 11): behind a load balancer that speaks the PROXY protocol
//! (HAProxy's `proxy-protocol.txt`, versions 1 and 2: AWS NLB, HAProxy, Envoy), every
//! connection starts with a header that carries the client's address. Parsed with `ppp`;
//! what follows the header is handed on untouched (TLS or HTTP).

use std::net::{IpAddr, SocketAddr};

use bytes::{Bytes, BytesMut};
use ppp::{HeaderResult, PartialResult, v1, v2};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Largest header read: a v1 header is at most 107 bytes; a v2 header's addresses and TLVs
/// from the balancers above fit in a few hundred. A longer one is refused rather than
/// buffered.
const MAX_HEADER: usize = 4096;

/// The longest v1 header, CRLF included (proxy-protocol.txt, 2.1).
const V1_MAX: usize = 107;

/// Why a connection's PROXY header was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyHeaderError {
    /// The connection closed before a complete header.
    Closed,
    /// Not a PROXY header, or a broken one.
    Invalid(String),
    TooLong,
    Io(String),
}

impl std::fmt::Display for ProxyHeaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProxyHeaderError::Closed => f.write_str("closed before a complete PROXY header"),
            ProxyHeaderError::Invalid(why) => write!(f, "invalid PROXY header: {why}"),
            ProxyHeaderError::TooLong => write!(f, "PROXY header longer than {MAX_HEADER} bytes"),
            ProxyHeaderError::Io(e) => write!(f, "reading the PROXY header: {e}"),
        }
    }
}

/// Reads the PROXY header at the start of `stream`: the client address it carries (`None`
/// for a v2 `LOCAL` connection, such as the balancer's health check, and for `UNKNOWN` or
/// UNIX addresses: the peer's address stands), and the bytes read past it.
pub async fn read<S: AsyncRead + Unpin>(
    stream: &mut S,
) -> Result<(Option<SocketAddr>, Bytes), ProxyHeaderError> {
    let mut buf = BytesMut::with_capacity(256);
    loop {
        let parsed = HeaderResult::parse(&buf);
        if !buf.is_empty() && !parsed.is_incomplete() {
            let (length, address) = match parsed {
                HeaderResult::V1(Ok(header)) => (header.header.len(), v1_source(&header.addresses)),
                HeaderResult::V2(Ok(header)) => (header.len(), v2_source(&header)),
                HeaderResult::V1(Err(e)) => return Err(ProxyHeaderError::Invalid(e.to_string())),
                HeaderResult::V2(Err(e)) => return Err(ProxyHeaderError::Invalid(e.to_string())),
            };
            let rest = buf.split_off(length.min(buf.len())).freeze();
            return Ok((address, rest));
        }
        if buf.len() >= MAX_HEADER {
            return Err(ProxyHeaderError::TooLong);
        }
        // A v1 header is one line of at most 107 bytes: a line that ends, or runs past that,
        // without parsing is broken, whatever the parser would still wait for.
        if buf.starts_with(b"PROXY ") {
            let line_ended = buf.windows(2).any(|w| w == b"\r\n");
            if line_ended || buf.len() > V1_MAX {
                return Err(ProxyHeaderError::Invalid("not a v1 header line".into()));
            }
        }
        let read = stream
            .read_buf(&mut buf)
            .await
            .map_err(|e| ProxyHeaderError::Io(e.to_string()))?;
        if read == 0 {
            return Err(ProxyHeaderError::Closed);
        }
    }
}

fn v1_source(addresses: &v1::Addresses) -> Option<SocketAddr> {
    match addresses {
        v1::Addresses::Tcp4(a) => {
            Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
        }
        v1::Addresses::Tcp6(a) => {
            Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
        }
        v1::Addresses::Unknown => None,
    }
}

fn v2_source(header: &v2::Header<'_>) -> Option<SocketAddr> {
    if header.command == v2::Command::Local {
        return None;
    }
    match header.addresses {
        v2::Addresses::IPv4(a) => {
            Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
        }
        v2::Addresses::IPv6(a) => {
            Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
        }
        v2::Addresses::Unspecified | v2::Addresses::Unix(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parse(bytes: &[u8]) -> Result<(Option<SocketAddr>, Bytes), ProxyHeaderError> {
        let mut input = bytes;
        read(&mut input).await
    }

    #[tokio::test]
    async fn v1_and_v2_headers_give_the_client_address_and_the_rest() {
        let (address, rest) = parse(b"PROXY TCP4 203.0.113.7 10.0.0.1 55555 443\r\nGET /")
            .await
            .expect("v1");
        assert_eq!(address, Some("203.0.113.7:55555".parse().expect("addr")));
        assert_eq!(&rest[..], b"GET /");
        let mut v2 = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
        v2.extend_from_slice(&[198, 51, 100, 9, 10, 0, 0, 1, 0x1f, 0x90, 0x01, 0xbb]);
        v2.extend_from_slice(b"\x16\x03\x01");
        let (address, rest) = parse(&v2).await.expect("v2");
        assert_eq!(address, Some("198.51.100.9:8080".parse().expect("addr")));
        assert_eq!(&rest[..], b"\x16\x03\x01");
        assert_eq!(parse(b"PROXY UNKNOWN\r\n").await.expect("unknown").0, None);
    }

    #[tokio::test]
    async fn anything_else_is_refused() {
        assert!(matches!(
            parse(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await,
            Err(ProxyHeaderError::Invalid(_))
        ));
        assert!(matches!(
            parse(b"PROXY TCP4 garbage\r\n").await,
            Err(ProxyHeaderError::Invalid(_))
        ));
        assert_eq!(
            parse(b"PROXY TCP4 203.0.113.7").await,
            Err(ProxyHeaderError::Closed)
        );
    }

    /// The caps: a v2 header announcing more than 4 KiB is refused at 4 KiB read, never
    /// buffered to its announced 64 KiB; a v1 line past 107 bytes is refused at once.
    #[tokio::test]
    async fn headers_past_their_caps_are_refused_without_reading_further() {
        let mut v2 = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\xff\xff".to_vec();
        v2.extend(std::iter::repeat_n(0u8, 5000));
        assert_eq!(parse(&v2).await, Err(ProxyHeaderError::TooLong));
        let mut v1 = b"PROXY ".to_vec();
        v1.extend(std::iter::repeat_n(b'1', 200));
        assert!(matches!(
            parse(&v1).await,
            Err(ProxyHeaderError::Invalid(_))
        ));
        // At the cap, a valid v2 header with TLVs to 3 KiB still passes.
        let mut tlvs = vec![0x04u8, 0x0b, 0xb8];
        tlvs.extend(std::iter::repeat_n(0u8, 3000));
        let length = u16::try_from(12 + tlvs.len()).expect("fits");
        let mut big = b"\r\n\r\n\0\r\nQUIT\n\x21\x11".to_vec();
        big.extend_from_slice(&length.to_be_bytes());
        big.extend_from_slice(&[198, 51, 100, 9, 10, 0, 0, 1, 0x1f, 0x90, 0x01, 0xbb]);
        big.extend_from_slice(&tlvs);
        big.extend_from_slice(b"GET");
        let (address, rest) = parse(&big).await.expect("3 KiB of TLVs");
        assert_eq!(address, Some("198.51.100.9:8080".parse().expect("addr")));
        assert_eq!(&rest[..], b"GET");
    }
}
