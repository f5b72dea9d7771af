//! Arbitrary bytes as a codebook set (JSON or binary): loading returns a typed error or a set
//! whose every codebook is a valid prefix code that survives a save/load round trip and
//! encodes and decodes data, with its family's members named or chosen from a sample.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shuff::{decode, encode, CodebookSet, EncodeOptions};
use shuff_fuzz::sample;

fuzz_target!(|data: &[u8]| {
    let Some((&kind, body)) = data.split_first() else { return };
    let loaded = if kind % 2 == 0 {
        let Ok(text) = std::str::from_utf8(body) else { return };
        CodebookSet::from_json(text)
    } else {
        CodebookSet::from_bytes(body)
    };
    let Ok(set) = loaded else { return };
    let again = CodebookSet::from_bytes(&set.to_bytes()).expect("a loaded set saves and loads");
    assert_eq!(again.len(), set.len());
    for (name, class) in set.classes() {
        let book = &class.codebook;
        assert_eq!(again.codebook(name).expect("same classes").fingerprint(), book.fingerprint());
        assert_eq!(again.family(name).expect("same classes").fingerprint(), class.family.fingerprint());
        let size = book.dtype().size();
        let tensor = &sample()[..sample().len().min(4096) / size * size];
        let frame = encode(book, tensor, EncodeOptions::default()).expect("whole elements");
        assert_eq!(decode(book, &frame).expect("own frame decodes"), tensor);
        // And with the family, through its last member (every stream).
        let last = (class.family.members().len() - 1) as u8;
        let frame = class.family.encode(tensor, EncodeOptions::default(), Some([last; shuff::frame::MAX_STREAMS])).expect("whole elements");
        let mut out = vec![0u8; tensor.len()];
        class.family.decode_into(&frame, &mut out).expect("own family frame decodes");
        assert_eq!(out, tensor);
        // And with the members the encoder picks from its sample, which must be the ones the
        // sample's histograms pick.
        let chosen = class.family.encoder_choice(tensor).expect("whole elements");
        let stride = shuff::measure::select_stride(tensor.len() / size);
        let hists = shuff::stats::sampled_stream_histograms(book.dtype(), book.layout(), tensor, stride).expect("whole elements");
        assert_eq!(chosen, class.family.choose_from_histograms(&hists));
        let frame = class.family.encode(tensor, EncodeOptions::default(), None).expect("whole elements");
        class.family.decode_into(&frame, &mut out).expect("own family frame decodes");
        assert_eq!(out, tensor);
    }
});
