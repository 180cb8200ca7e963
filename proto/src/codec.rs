//! The codec every generated client and server of `loadshift.v1` uses: prost encoding with 1 KiB
//! starting buffers instead of tonic's 8 KiB. A control plane holds one long-lived stream per
//! proxy, each with an encode and a decode buffer, and loadshift's messages are a few KiB at most
//! (buffers still grow when a message needs it), so this saves ~14 KiB per connected proxy.

use std::marker::PhantomData;

use tonic::codec::{BufferSettings, Codec};
use tonic_prost::{ProstDecoder, ProstEncoder};

/// Starting buffer size, bytes.
const BUFFER_SIZE: usize = 1024;
/// Tonic's default: encoded bytes gathered before a streaming response yields a frame.
const YIELD_THRESHOLD: usize = 32 * 1024;

/// Prost codec with small starting buffers.
#[derive(Debug, Clone, Copy)]
pub struct SmallBufferCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for SmallBufferCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> Codec for SmallBufferCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(BufferSettings::new(BUFFER_SIZE, YIELD_THRESHOLD))
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::new(BufferSettings::new(BUFFER_SIZE, YIELD_THRESHOLD))
    }
}
