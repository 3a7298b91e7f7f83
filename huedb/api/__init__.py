"""What clients call: Client, Collection, the ServerAPI interface, its in-process and HTTP
implementations, and the checks of everything a request carries."""
