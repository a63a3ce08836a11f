//! The WASI a policy is linked with: wasmtime-wasi's synchronous preview-2 implementation,
//! except that every call that can wait (`wasi:io/poll`'s `poll` and `block`, the streams'
//! `blocking-*` functions and stream drops, which may flush) waits at most until the call's
//! deadline. Epoch interruption stops guest code only: a policy sleeping or blocked on a
//! pollable waits inside the host, where no epoch check runs, and would otherwise hold its
//! instance slot for as long as it likes.
//!
//! Nothing else in the linked WASI waits: with no preopens there are no file descriptors,
//! sockets cannot bind or connect (every address is denied) and name lookup is off; stdin is
//! closed and stdout/stderr are in-memory pipes. Those calls answer at once.

use std::future::Future;
use std::time::Instant;

use wasmtime::component::{HasData, Linker, Resource, ResourceTable};
use wasmtime_wasi::p2::bindings::io::{poll as async_poll, streams as async_streams};
use wasmtime_wasi::p2::bindings::sync::io::{poll, streams};
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream, DynPollable, StreamError, StreamResult};
use wasmtime_wasi::runtime::in_tokio;

use super::sandbox::CallState;

/// Links WASI into `linker`, its waiting calls bounded by the call's deadline.
pub(crate) fn add_to_linker(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_sync(linker)?;
    // Replace the two interfaces whose calls wait; every other function stays as linked.
    linker.allow_shadowing(true);
    poll::add_to_linker::<CallState, Bounded>(linker, bounded)?;
    streams::add_to_linker::<CallState, Bounded>(linker, bounded)?;
    linker.allow_shadowing(false);
    Ok(())
}

/// A host call found the call's deadline passed while it waited; the call stops with a
/// timeout, as when the epoch deadline interrupts guest code.
#[derive(Debug, thiserror::Error)]
#[error("the policy call's deadline passed while it waited in a WASI call")]
pub(crate) struct DeadlineExceeded;

/// The resource table of one call and the call's deadline.
pub(crate) struct BoundedIo<'a> {
    table: &'a mut ResourceTable,
    deadline: Instant,
}

struct Bounded;

impl HasData for Bounded {
    type Data<'a> = BoundedIo<'a>;
}

fn bounded(state: &mut CallState) -> BoundedIo<'_> {
    let (table, deadline) = state.io();
    BoundedIo { table, deadline }
}

/// Runs `f` (a wasmtime-wasi host future) to completion, or until `deadline`.
fn wait<F: Future>(deadline: Instant, f: F) -> Result<F::Output, DeadlineExceeded> {
    // The timer is made inside the future: it needs the runtime that `in_tokio` enters.
    in_tokio(async move { tokio::time::timeout_at(deadline.into(), f).await })
        .map_err(|_| DeadlineExceeded)
}

fn stream_wait<T>(deadline: Instant, f: impl Future<Output = StreamResult<T>>) -> StreamResult<T> {
    wait(deadline, f).map_err(|e| StreamError::Trap(e.into()))?
}

impl poll::Host for BoundedIo<'_> {
    fn poll(&mut self, pollables: Vec<Resource<DynPollable>>) -> wasmtime::Result<Vec<u32>> {
        wait(
            self.deadline,
            async_poll::Host::poll(&mut *self.table, pollables),
        )?
    }
}

impl poll::HostPollable for BoundedIo<'_> {
    fn ready(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<bool> {
        // Looks once, never waits.
        poll::HostPollable::ready(&mut *self.table, pollable)
    }

    fn block(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        wait(
            self.deadline,
            async_poll::HostPollable::block(&mut *self.table, pollable),
        )?
    }

    fn drop(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        poll::HostPollable::drop(&mut *self.table, pollable)
    }
}

impl streams::Host for BoundedIo<'_> {
    fn convert_stream_error(&mut self, err: StreamError) -> wasmtime::Result<streams::StreamError> {
        streams::Host::convert_stream_error(&mut *self.table, err)
    }
}

impl streams::HostOutputStream for BoundedIo<'_> {
    fn drop(&mut self, stream: Resource<DynOutputStream>) -> wasmtime::Result<()> {
        wait(
            self.deadline,
            async_streams::HostOutputStream::drop(&mut *self.table, stream),
        )?
    }

    fn check_write(&mut self, stream: Resource<DynOutputStream>) -> StreamResult<u64> {
        streams::HostOutputStream::check_write(&mut *self.table, stream)
    }

    fn write(&mut self, stream: Resource<DynOutputStream>, bytes: Vec<u8>) -> StreamResult<()> {
        streams::HostOutputStream::write(&mut *self.table, stream, bytes)
    }

    fn blocking_write_and_flush(
        &mut self,
        stream: Resource<DynOutputStream>,
        bytes: Vec<u8>,
    ) -> StreamResult<()> {
        stream_wait(
            self.deadline,
            async_streams::HostOutputStream::blocking_write_and_flush(
                &mut *self.table,
                stream,
                bytes,
            ),
        )
    }

    fn blocking_write_zeroes_and_flush(
        &mut self,
        stream: Resource<DynOutputStream>,
        len: u64,
    ) -> StreamResult<()> {
        stream_wait(
            self.deadline,
            async_streams::HostOutputStream::blocking_write_zeroes_and_flush(
                &mut *self.table,
                stream,
                len,
            ),
        )
    }

    fn subscribe(
        &mut self,
        stream: Resource<DynOutputStream>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        streams::HostOutputStream::subscribe(&mut *self.table, stream)
    }

    fn write_zeroes(&mut self, stream: Resource<DynOutputStream>, len: u64) -> StreamResult<()> {
        streams::HostOutputStream::write_zeroes(&mut *self.table, stream, len)
    }

    fn flush(&mut self, stream: Resource<DynOutputStream>) -> StreamResult<()> {
        streams::HostOutputStream::flush(&mut *self.table, stream)
    }

    fn blocking_flush(&mut self, stream: Resource<DynOutputStream>) -> StreamResult<()> {
        stream_wait(
            self.deadline,
            // As wasmtime-wasi's own `blocking_flush`: the stream is only borrowed here.
            async_streams::HostOutputStream::blocking_flush(
                &mut *self.table,
                Resource::new_borrow(stream.rep()),
            ),
        )
    }

    fn splice(
        &mut self,
        dst: Resource<DynOutputStream>,
        src: Resource<DynInputStream>,
        len: u64,
    ) -> StreamResult<u64> {
        streams::HostOutputStream::splice(&mut *self.table, dst, src, len)
    }

    fn blocking_splice(
        &mut self,
        dst: Resource<DynOutputStream>,
        src: Resource<DynInputStream>,
        len: u64,
    ) -> StreamResult<u64> {
        stream_wait(
            self.deadline,
            async_streams::HostOutputStream::blocking_splice(&mut *self.table, dst, src, len),
        )
    }
}

impl streams::HostInputStream for BoundedIo<'_> {
    fn drop(&mut self, stream: Resource<DynInputStream>) -> wasmtime::Result<()> {
        wait(
            self.deadline,
            async_streams::HostInputStream::drop(&mut *self.table, stream),
        )?
    }

    fn read(&mut self, stream: Resource<DynInputStream>, len: u64) -> StreamResult<Vec<u8>> {
        streams::HostInputStream::read(&mut *self.table, stream, len)
    }

    fn blocking_read(
        &mut self,
        stream: Resource<DynInputStream>,
        len: u64,
    ) -> StreamResult<Vec<u8>> {
        stream_wait(
            self.deadline,
            async_streams::HostInputStream::blocking_read(&mut *self.table, stream, len),
        )
    }

    fn skip(&mut self, stream: Resource<DynInputStream>, len: u64) -> StreamResult<u64> {
        streams::HostInputStream::skip(&mut *self.table, stream, len)
    }

    fn blocking_skip(&mut self, stream: Resource<DynInputStream>, len: u64) -> StreamResult<u64> {
        stream_wait(
            self.deadline,
            async_streams::HostInputStream::blocking_skip(&mut *self.table, stream, len),
        )
    }

    fn subscribe(
        &mut self,
        stream: Resource<DynInputStream>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        streams::HostInputStream::subscribe(&mut *self.table, stream)
    }
}
