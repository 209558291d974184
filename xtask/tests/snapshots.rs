//! Snapshots of every generated file, so a change to the generator or to a schema shows up in
//! review as a diff of what it generates (`cargo insta review` to accept).

use xtask::contract_set_file::ContractSetFile;
use xtask::inventory::Layout;

#[test]
fn generated_files() {
    let layout = Layout::of_this_checkout();
    let set = layout.load().unwrap();
    let recorded = ContractSetFile::read(&layout.schemas_dir()).unwrap();
    let files = xtask::codegen::generate(&set, &recorded).unwrap();
    assert!(files.len() > 10, "only {} generated files", files.len());
    for file in files {
        let name = file.path.replace('/', "__");
        insta::assert_snapshot!(name, file.contents);
    }
}
