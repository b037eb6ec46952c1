//! `gunicornctl events`: print the daemon's event stream as it arrives.

use std::path::Path;

use serde_json::Value;

use crate::client::{is_stream_end, EventStream, StreamItem};
use crate::commands::Output;
use crate::error::CtlError;
use crate::render;

/// Follows the stream until the daemon closes it (then returns `Ok`) or
/// the reader goes away.
pub fn follow(path: &Path, o: &mut Output) -> Result<(), CtlError> {
    let mut stream = EventStream::subscribe(path)?;
    loop {
        match stream.next_within(None) {
            Ok(Some(item)) => print_item(o, &item)?,
            Ok(None) => {}
            Err(e) if is_stream_end(&e) => {
                if !o.json {
                    eprintln!("gunicornctl: the daemon closed the event stream");
                }
                return Ok(());
            }
            Err(e) => return Err(e),
        }
    }
}

/// Human: `<RFC 3339 time>  <what happened>`. JSON: one object per line.
fn print_item(o: &mut Output, item: &StreamItem) -> Result<(), CtlError> {
    match (item, o.json) {
        (StreamItem::Event(event), true) => writeln!(
            o.out,
            "{}",
            serde_json::to_string(event).unwrap_or_default()
        )?,
        (StreamItem::Unknown(raw), true) => writeln!(o.out, "{raw}")?,
        (StreamItem::Event(event), false) => {
            writeln!(o.out, "{}  {}", render::timestamp(event.time), event.kind)?
        }
        (StreamItem::Unknown(raw), false) => {
            let time = raw
                .get("time")
                .and_then(Value::as_f64)
                .map_or_else(|| "-".to_string(), render::timestamp);
            writeln!(o.out, "{time}  {raw}")?
        }
    }
    o.out.flush()?;
    Ok(())
}
