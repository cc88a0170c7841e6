//! What the loaders read of an object with the `object` crate: its
//! programs' sections and where its globals live.

use std::collections::HashMap;

use object::{Object, ObjectSection, ObjectSymbol, SymbolKind};

/// Maps each program (function symbol, global or static) to the name of
/// its ELF section.
pub fn program_sections(data: &[u8]) -> Result<HashMap<String, String>, object::Error> {
    let file = object::File::parse(data)?;
    let mut sections = HashMap::new();
    for symbol in file.symbols() {
        if symbol.kind() != SymbolKind::Text {
            continue;
        }
        let Some(section) = symbol
            .section_index()
            .and_then(|i| file.section_by_index(i).ok())
        else {
            continue;
        };
        let (Ok(name), Ok(section)) = (symbol.name(), section.name()) else {
            continue;
        };
        if section != ".text" {
            sections.insert(name.to_owned(), section.to_owned());
        }
    }
    Ok(sections)
}

/// Where the global `name` lives: its section's name and its offset there.
pub fn global_location(data: &[u8], name: &str) -> Option<(String, usize)> {
    let file = object::File::parse(data).ok()?;
    let symbol = file.symbols().find(|s| s.name() == Ok(name))?;
    let section = file.section_by_index(symbol.section_index()?).ok()?;
    Some((section.name().ok()?.to_owned(), symbol.address() as usize))
}
