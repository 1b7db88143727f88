//! Turning an occurrence into the document a receiver sends: the shared default JSON (serialized
//! once per occurrence, whatever the number of receivers), the deDotted event, or a layout.

use bytes::{Bytes, BytesMut};

use crate::event::Occurrence;
use crate::template::{Layout, TemplateError};

#[derive(Clone)]
pub enum Encoder {
    /// The full event, resmoio's shape.
    Event,
    /// The full event with dots in label/annotation keys replaced by `_`.
    DeDotted,
    /// A layout rendered against the event (deDotted first when asked).
    Layout { layout: Layout, de_dot: bool },
}

impl Encoder {
    pub fn new(layout: Option<&serde_json::Value>, de_dot: bool) -> Result<Self, TemplateError> {
        Ok(match layout {
            Some(l) => Encoder::Layout {
                layout: Layout::compile(l)?,
                de_dot,
            },
            None if de_dot => Encoder::DeDotted,
            None => Encoder::Event,
        })
    }

    /// As [`encode`](Self::encode), writing the default document into the worker's `arena`
    /// when it is not serialized yet ([`Occurrence::json_in`]).
    pub fn encode_in(
        &self,
        occ: &Occurrence,
        arena: &mut BytesMut,
    ) -> Result<Bytes, TemplateError> {
        match self {
            Encoder::Event => Ok(occ.json_in(arena).clone()),
            _ => self.encode(occ),
        }
    }

    /// One JSON document, without a trailing newline.
    pub fn encode(&self, occ: &Occurrence) -> Result<Bytes, TemplateError> {
        Ok(match self {
            Encoder::Event => occ.json().clone(),
            Encoder::DeDotted => Bytes::from(
                serde_json::to_vec(&occ.event.de_dotted()).expect("an Event serializes"),
            ),
            Encoder::Layout { layout, de_dot } => {
                let doc = if *de_dot {
                    let v =
                        serde_json::to_value(occ.event.de_dotted()).expect("an Event serializes");
                    layout.render(&v)?
                } else {
                    layout.render(occ.value())?
                };
                Bytes::from(serde_json::to_vec(&doc).expect("a JSON value serializes"))
            }
        })
    }
}
