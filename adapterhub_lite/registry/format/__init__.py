"""What client and server share: refs, the blob store, and the checks at the trust boundary."""
