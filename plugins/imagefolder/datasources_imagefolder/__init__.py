"""datasources-imagefolder: PNG/JPEG images with a CSV manifest, mapped into DICOM's native format."""
