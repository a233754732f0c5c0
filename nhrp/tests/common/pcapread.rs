//! Reads every frame of a pcap or pcapng file as (link type, bytes).
//! Shared by the `decode` example and the golden tests.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};

use pcap_file::pcap::PcapReader;
use pcap_file::pcapng::{Block, PcapNgReader};

/// One captured frame.
pub struct Frame {
    /// Link type of the interface it was captured on.
    pub linktype: u32,
    /// Frame bytes.
    pub data: Vec<u8>,
}

/// Reads all frames; pcapng is recognised by its section header magic.
pub fn read_frames(path: &str) -> Result<Vec<Frame>, String> {
    let mut f = File::open(path).map_err(|e| format!("{path}: {e}"))?;
    let mut magic = [0u8; 4];
    f.read_exact(&mut magic)
        .map_err(|e| format!("{path}: {e}"))?;
    f.seek(SeekFrom::Start(0))
        .map_err(|e| format!("{path}: {e}"))?;
    let mut out = Vec::new();
    if magic == [0x0a, 0x0d, 0x0d, 0x0a] {
        let mut r = PcapNgReader::new(BufReader::new(f)).map_err(|e| format!("{path}: {e}"))?;
        let mut links: Vec<u32> = Vec::new();
        while let Some(b) = r.next_block() {
            match b.map_err(|e| format!("{path}: {e}"))? {
                Block::InterfaceDescription(i) => links.push(u32::from(i.linktype)),
                Block::EnhancedPacket(p) => {
                    let lt = *links
                        .get(p.interface_id as usize)
                        .ok_or_else(|| format!("{path}: packet on unknown interface"))?;
                    out.push(Frame {
                        linktype: lt,
                        data: p.data.into_owned(),
                    });
                }
                Block::SimplePacket(p) => out.push(Frame {
                    linktype: *links.first().unwrap_or(&1),
                    data: p.data.into_owned(),
                }),
                _ => {}
            }
        }
    } else {
        let mut r = PcapReader::new(BufReader::new(f)).map_err(|e| format!("{path}: {e}"))?;
        let lt = u32::from(r.header().datalink);
        // Raw records: some captures (fuzzer output) carry orig_len above
        // the snap length, which the typed reader refuses; the frame bytes
        // are still what we want to judge.
        while let Some(p) = r.next_raw_packet() {
            let p = p.map_err(|e| format!("{path}: {e}"))?;
            out.push(Frame {
                linktype: lt,
                data: p.data.into_owned(),
            });
        }
    }
    Ok(out)
}
