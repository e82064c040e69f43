"""One benchmark cell: plan, encoder store, device, record, provenance, predictions, weights."""
