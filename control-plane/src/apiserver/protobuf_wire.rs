//! Just enough of protobuf's wire format to read the few Kubernetes protobuf bodies kubectl's
//! typed clients send (self access reviews, token requests, CSR approvals): the `k8s\0`
//! envelope and the fields of a message. Protobuf is never served.

/// The magic prefix of Kubernetes' protobuf encoding.
pub const MAGIC: &[u8] = b"k8s\0";

/// One field's value on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire<'a> {
    /// A varint (int32/int64/bool/enum).
    Varint(u64),
    /// A length-delimited value (string, bytes, embedded message).
    Bytes(&'a [u8]),
    /// A fixed 32- or 64-bit value (unused by the messages read here).
    Fixed,
}

/// The object inside an enveloped body: `k8s\0`, then a `runtime.Unknown` whose `raw`
/// (field 2) is the object.
pub fn unwrap_envelope(bytes: &[u8]) -> Result<&[u8], String> {
    let unknown = bytes
        .strip_prefix(MAGIC)
        .ok_or("no k8s protobuf envelope")?;
    field(unknown, 2)?.ok_or_else(|| "the envelope has no object".to_string())
}

/// Every field of `message`, in order, as (field number, value).
pub fn fields(mut message: &[u8]) -> Result<Vec<(u64, Wire<'_>)>, String> {
    let mut out = Vec::new();
    while !message.is_empty() {
        let key = varint(&mut message)?;
        let value = match key & 7 {
            0 => Wire::Varint(varint(&mut message)?),
            1 => {
                message = message.get(8..).ok_or("truncated")?;
                Wire::Fixed
            }
            5 => {
                message = message.get(4..).ok_or("truncated")?;
                Wire::Fixed
            }
            2 => {
                let len = usize::try_from(varint(&mut message)?).map_err(|_| "too long")?;
                let value = message.get(..len).ok_or("truncated")?;
                message = &message[len..];
                Wire::Bytes(value)
            }
            other => return Err(format!("wire type {other} not supported")),
        };
        out.push((key >> 3, value));
    }
    Ok(out)
}

/// The last length-delimited field `number` of `message`.
pub fn field(message: &[u8], number: u64) -> Result<Option<&[u8]>, String> {
    Ok(fields(message)?
        .into_iter()
        .filter_map(|(n, v)| match v {
            Wire::Bytes(b) if n == number => Some(b),
            _ => None,
        })
        .next_back())
}

/// The last length-delimited field `number` of `message` as UTF-8 text, named `name` in
/// errors.
pub fn string(message: &[u8], number: u64, name: &str) -> Result<Option<String>, String> {
    field(message, number)?
        .map(|b| {
            std::str::from_utf8(b)
                .map(str::to_string)
                .map_err(|_| format!("{name}: not UTF-8"))
        })
        .transpose()
}

fn varint(message: &mut &[u8]) -> Result<u64, String> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = message.split_first().ok_or("truncated varint")?;
        *message = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("varint too long".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fields_and_refuses_truncation() {
        // field 1: "ab"; field 4: varint 900; field 1 again: "c".
        let message = [0x0a, 2, b'a', b'b', 4 << 3, 0x84, 0x07, 0x0a, 1, b'c'];
        let all = fields(&message).unwrap();
        assert_eq!(all[1], (4, Wire::Varint(900)));
        assert_eq!(field(&message, 1).unwrap(), Some(&b"c"[..]));
        assert_eq!(string(&message, 1, "x").unwrap().as_deref(), Some("c"));
        assert_eq!(field(&message, 2).unwrap(), None);
        assert!(fields(&message[..3]).is_err());
        assert!(unwrap_envelope(b"{}").is_err());
    }
}
