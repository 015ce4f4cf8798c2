pub mod localstack;
