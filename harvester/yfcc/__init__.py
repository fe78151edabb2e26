"""The YFCC100M source (`harvester import-yfcc`): a dataset line parsed into the row
`yfcc_photos` keeps (`rows`, pure), and files bulk-loaded through it (`load`)."""
