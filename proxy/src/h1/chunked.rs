//! Chunked transfer coding (RFC 9112 §7.1), sans-IO: a decoder fed whatever bytes arrived that
//! hands back body data as slices of its input, and the encoder's framing. Chunk extensions are
//! skipped; trailer fields of a request are read and dropped (HTTP/1.1 clients rarely send them
//! and the upstream connection may not accept them).
//!
//! The decoder is strict where parsers are known to disagree (the request-smuggling shapes):
//! every line ends in CRLF (a bare LF is refused), a size line needs at least one hex digit (an
//! empty one is not the last chunk), an extension holds no control characters, and a trailer
//! line is a field (a token name, a colon, a value without control characters).

/// Largest chunk-size line, extensions included, before the request is refused.
const MAX_LINE: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Reading a chunk-size line; `n` is its value so far, `digits` how many hex digits.
    Size {
        n: u64,
        digits: u8,
        ext: bool,
        line: usize,
    },
    /// Whitespace after the size digits: only more of it, `;` or the line's end may follow
    /// (RFC 9112 §7.1.1: `chunk-ext = *( BWS ";" ... )`).
    SizeWs {
        n: u64,
        digits: u8,
        line: usize,
    },
    /// Expecting the LF of a size line.
    SizeLf {
        n: u64,
    },
    Data(u64),
    DataCr,
    DataLf,
    /// Trailer section: at the start of a line (`len == 0`) or inside one; `colon` once the
    /// line's field name ended.
    Trailer {
        len: usize,
        colon: bool,
    },
    TrailerLf {
        len: usize,
    },
    Done,
}

/// Malformed chunked coding.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed chunked body: {0}")]
pub struct ChunkError(&'static str);

/// Incremental decoder.
#[derive(Debug)]
pub struct Decoder {
    state: State,
}

impl Default for Decoder {
    fn default() -> Self {
        Self {
            state: State::Size {
                n: 0,
                digits: 0,
                ext: false,
                line: 0,
            },
        }
    }
}

/// What one decoding step found.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Body data at `buf[start..end]`; `used` bytes of the input are consumed.
    Data {
        start: usize,
        end: usize,
        used: usize,
    },
    /// All of the input consumed without data; feed more.
    NeedMore,
    /// The body ended; `used` bytes consumed (the rest belongs to the next request).
    End { used: usize },
}

impl Decoder {
    /// Advances over `buf` until data, the end, or the end of `buf`.
    pub fn step(&mut self, buf: &[u8]) -> Result<Step, ChunkError> {
        let mut i = 0;
        while i < buf.len() {
            let b = buf[i];
            self.state = match self.state {
                State::Size {
                    n,
                    digits,
                    ext,
                    line,
                } => {
                    if line >= MAX_LINE {
                        return Err(ChunkError("chunk-size line too long"));
                    }
                    match b {
                        b'\r' if digits > 0 => State::SizeLf { n },
                        b'\r' => return Err(ChunkError("chunk size line without a size")),
                        b'\n' => return Err(ChunkError("bare LF in a chunk size line")),
                        _ if ext && (b == b'\t' || !(b < 0x20 || b == 0x7f)) => State::Size {
                            n,
                            digits,
                            ext,
                            line: line + 1,
                        },
                        _ if ext => return Err(ChunkError("control character in chunk extension")),
                        b';' if digits > 0 => State::Size {
                            n,
                            digits,
                            ext: true,
                            line: line + 1,
                        },
                        b' ' | b'\t' if digits > 0 => State::SizeWs {
                            n,
                            digits,
                            line: line + 1,
                        },
                        _ => {
                            let d = (b as char)
                                .to_digit(16)
                                .ok_or(ChunkError("chunk size is not hex"))?;
                            if digits >= 16 {
                                return Err(ChunkError("chunk size overflows"));
                            }
                            State::Size {
                                n: n * 16 + u64::from(d),
                                digits: digits + 1,
                                ext,
                                line: line + 1,
                            }
                        }
                    }
                }
                State::SizeWs { n, digits, line } => match b {
                    _ if line >= MAX_LINE => return Err(ChunkError("chunk-size line too long")),
                    b' ' | b'\t' => State::SizeWs {
                        n,
                        digits,
                        line: line + 1,
                    },
                    b';' => State::Size {
                        n,
                        digits,
                        ext: true,
                        line: line + 1,
                    },
                    b'\r' => State::SizeLf { n },
                    // `5 6` is 5 here, 0x56 to a parser that drops the space: refused.
                    _ => return Err(ChunkError("junk after a chunk size")),
                },
                State::SizeLf { n } => {
                    if b != b'\n' {
                        return Err(ChunkError("expected LF after chunk size"));
                    }
                    self.after_size(n)
                }
                State::Data(left) => {
                    let take = (buf.len() - i).min(usize::try_from(left).unwrap_or(usize::MAX));
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        State::DataCr
                    } else {
                        State::Data(left)
                    };
                    return Ok(Step::Data {
                        start: i,
                        end: i + take,
                        used: i + take,
                    });
                }
                State::DataCr => match b {
                    b'\r' => State::DataLf,
                    _ => return Err(ChunkError("expected CRLF after chunk data")),
                },
                State::DataLf => {
                    if b != b'\n' {
                        return Err(ChunkError("expected LF after chunk data"));
                    }
                    self.size_start()
                }
                State::Trailer { len, colon } => match b {
                    b'\r' if len == 0 || colon => State::TrailerLf { len },
                    b'\r' => return Err(ChunkError("trailer line is not a field")),
                    b'\n' => return Err(ChunkError("bare LF in the trailer section")),
                    _ if len >= MAX_LINE => return Err(ChunkError("trailer line too long")),
                    b':' if len > 0 => State::Trailer {
                        len: len + 1,
                        colon: true,
                    },
                    // A field name is a token (RFC 9110 §5.1): no space before the colon, no
                    // obs-fold, nothing a field parser behind another hop would read otherwise.
                    _ if !colon && !is_tchar(b) => {
                        return Err(ChunkError("trailer field name is not a token"));
                    }
                    _ if (b < 0x20 && b != b'\t') || b == 0x7f => {
                        return Err(ChunkError("control character in a trailer line"));
                    }
                    _ => State::Trailer {
                        len: len + 1,
                        colon,
                    },
                },
                State::TrailerLf { len } => {
                    if b != b'\n' {
                        return Err(ChunkError("expected LF in trailer section"));
                    }
                    if len == 0 {
                        State::Done
                    } else {
                        State::Trailer {
                            len: 0,
                            colon: false,
                        }
                    }
                }
                State::Done => return Ok(Step::End { used: i }),
            };
            i += 1;
            if self.state == State::Done {
                return Ok(Step::End { used: i });
            }
        }
        Ok(Step::NeedMore)
    }

    fn after_size(&self, n: u64) -> State {
        if n == 0 {
            State::Trailer {
                len: 0,
                colon: false,
            }
        } else {
            State::Data(n)
        }
    }

    fn size_start(&self) -> State {
        State::Size {
            n: 0,
            digits: 0,
            ext: false,
            line: 0,
        }
    }
}

/// `tchar` (RFC 9110 §5.6.2).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Appends the line that opens a chunk of `len` bytes.
pub fn push_chunk_header(out: &mut Vec<u8>, len: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 16];
    let (mut i, mut n) = (digits.len(), len);
    loop {
        i -= 1;
        digits[i] = HEX[n & 0xf];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `input` fed in pieces of `piece` bytes; returns the body and the bytes left over.
    fn decode(input: &[u8], piece: usize) -> Result<(Vec<u8>, Vec<u8>), ChunkError> {
        let mut d = Decoder::default();
        let mut body = Vec::new();
        let mut pending: Vec<u8> = Vec::new();
        for (k, chunk) in input.chunks(piece).enumerate() {
            pending.extend_from_slice(chunk);
            let unfed = &input[((k + 1) * piece).min(input.len())..];
            loop {
                match d.step(&pending)? {
                    Step::Data { start, end, used } => {
                        body.extend_from_slice(&pending[start..end]);
                        pending.drain(..used);
                    }
                    Step::NeedMore => {
                        pending.clear();
                        break;
                    }
                    Step::End { used } => {
                        pending.drain(..used);
                        pending.extend_from_slice(unfed);
                        return Ok((body, pending));
                    }
                }
            }
        }
        Err(ChunkError("unterminated"))
    }

    #[test]
    fn decodes_in_any_split_and_leaves_the_next_request() {
        let raw = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\nGET /";
        for piece in 1..raw.len() {
            let (body, rest) = decode(raw, piece).unwrap();
            assert_eq!(body, b"hello world", "piece {piece}");
            assert_eq!(rest, b"GET /", "piece {piece}");
        }
    }

    #[test]
    fn refuses_malformed_coding() {
        for raw in [
            &b"zz\r\n"[..],
            b"5\r\nhelloXX",
            b"5\rX",
            b"11111111111111111\r\n",
        ] {
            assert!(
                decode(raw, raw.len()).is_err(),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn refuses_the_shapes_parsers_disagree_on() {
        for raw in [
            // An empty size line is not the last chunk.
            &b"\r\n\r\n"[..],
            // Bare LF after a size, after data, in trailers.
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhello\n0\r\n\r\n",
            b"0\r\nX-T: 1\n\r\n",
            b"0\r\n\n",
            // A trailer line that is not a field.
            b"0\r\nnot a field\r\n\r\n",
            // A newline hidden in an extension.
            b"5;a=b\nX\r\nhello\r\n0\r\n\r\n",
        ] {
            assert!(
                decode(raw, raw.len()).is_err(),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
        // Extensions with spaces and tabs, and trailers, still pass.
        let ok = b"5 ;a=b\t;c\r\nhello\r\n0\r\nX-T: 1\r\n\r\n";
        assert_eq!(decode(ok, ok.len()).unwrap().0, b"hello");
    }

    /// Found by the differential test against hyper (`h1::tests::differential`).
    #[test]
    fn regressions_from_the_differential_test() {
        for raw in [
            // Only whitespace, `;` or the line end after the size's whitespace.
            &b"5 6\r\nhello\r\n0\r\n\r\n"[..],
            b"5\t\x80\r\nhello\r\n0\r\n\r\n",
            // A trailer name is a token: no space before the colon, no obs-fold, not empty.
            b"0\r\nX-T : 1\r\n\r\n",
            b"0\r\nX-T: 1\r\n folded\r\n\r\n",
            b"0\r\n: 1\r\n\r\n",
            b"0\r\nX-T: a\x7fb\r\n\r\n",
        ] {
            assert!(
                decode(raw, raw.len()).is_err(),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
        let ok = b"5 \t \r\nhello\r\n0 ;a\r\nX-T: a:b\tc\r\n\r\n";
        assert_eq!(decode(ok, ok.len()).unwrap().0, b"hello");
    }

    #[test]
    fn encodes_chunk_framing() {
        for (len, want) in [
            (255, &b"ff\r\n"[..]),
            (1, b"1\r\n"),
            (0, b"0\r\n"),
            (4096, b"1000\r\n"),
        ] {
            let mut out = Vec::new();
            push_chunk_header(&mut out, len);
            assert_eq!(out, want);
        }
    }
}
