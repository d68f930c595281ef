"""mesh_common: code every contract-mesh service needs, written once."""
