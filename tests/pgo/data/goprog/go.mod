module onair.example/burn

go 1.19
