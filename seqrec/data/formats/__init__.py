"""One module per layout read by `seqrec.data.load.load_dataset`, and what they share."""
