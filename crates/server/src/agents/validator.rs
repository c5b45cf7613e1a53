//! The RA's validator when routes are configured: runs each perspective and combines.
